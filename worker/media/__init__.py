"""Animations and video (issue 10): turn motion into the few still frames the model judges, then one verdict.

    bytes ─kinds.media_kind─▶ None: a still image, judged as always (intake/images.py)
                           ├▶ "animation" (GIF, APNG, WebP)  animation.py (Pillow, frame by frame)
                           └▶ "video" (MP4/MOV, WebM/MKV)    video.py (PyAV, allowlisted codecs only)
          ─extract.FrameExtractor─▶ sampler.FrameSampler (uniform + scene changes, near-duplicates once)
          ─▶ PreparedMedia (a PreparedImage carrying its sampled frames)
    judging.FrameJudge: every frame to the model at once, one aggregated judgement, per-frame results.

Decoding is bounded like a still image (pixels, decode memory, the process's decode budget) and also in
time and length (`max_video_s`, `max_decoded_frames`, a decode deadline checked between frames), whatever
the headers claim; every failure is a `ModerationFailed` with an IMAGE_*/VIDEO_* code.
"""
