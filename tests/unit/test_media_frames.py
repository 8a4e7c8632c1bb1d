"""Issue 10: the frame sampler, the animation and video decoders with their limits, and the aggregation."""

from __future__ import annotations

import io
import resource
import struct
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.media_files import (
    GREY,
    RED,
    apng_declaring,
    gif,
    lying_duration,
    million_frame_gif,
    video,
    without_samples,
)
from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.llavaguard import Judgement
from worker.inference.output_parser import Assessment
from worker.intake.deadline import Deadline
from worker.intake.decode_budget import DecodeBudget
from worker.intake.images import PreparedImage
from worker.media.decoded import DecodedFrame
from worker.media.extract import FrameExtractor, FrameLimits, PreparedMedia
from worker.media.judging import FrameJudge, aggregate
from worker.media.kinds import media_kind
from worker.media.sampler import FrameSampler, SampledFrame, difference, thumbnail
from worker.models import ImageInfo
from worker.observability import metrics
from worker.standin.palette import make_image


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, colour)


def offer_all(sampler: FrameSampler, colours: list[tuple[int, int, int]]) -> list[int]:
    """Offer one solid frame per colour; returns the indices rendered."""
    rendered: list[int] = []
    for index, colour in enumerate(colours):
        def render(index: int = index) -> bytes:
            rendered.append(index)
            return b"jpeg%d" % index
        sampler.offer(index, index / 10, thumbnail(solid(colour)), render)
    return rendered


def extractor(**limits: float) -> FrameExtractor:
    return FrameExtractor(FrameLimits(**limits), max_pixels=10**8, max_side_px=1024,  # type: ignore[arg-type]
                          max_decode_bytes=2_000_000)


def failure(extract: FrameExtractor, data: bytes) -> ModerationFailed:
    with pytest.raises(ModerationFailed) as caught:
        extract.prepare(data, source=None)
    return caught.value


# ── the sampler ───────────────────────────────────────────────────────────────────────────────────────────

def test_one_different_frame_among_sixty_is_picked_with_its_index() -> None:
    sampler = FrameSampler(16)
    offer_all(sampler, [RED if i == 30 else GREY for i in range(60)])
    assert [f.index for f in sampler.picked()] == [0, 30]
    assert sampler.picked()[1] == SampledFrame(30, 3.0, b"jpeg30")


def test_identical_frames_are_judged_once() -> None:
    sampler = FrameSampler(16)
    offer_all(sampler, [GREY] * 500)
    assert [f.index for f in sampler.picked()] == [0]


def test_never_more_than_max_frames_and_rendering_is_bounded() -> None:
    colours = [((i * 37) % 256, (i * 91) % 256, (i * 53) % 256) for i in range(400)]
    sampler = FrameSampler(8)
    rendered = offer_all(sampler, colours)
    picked = sampler.picked()
    assert 1 <= len(picked) <= 8 and picked[0].index == 0
    assert [f.index for f in picked] == sorted(f.index for f in picked)
    assert len(rendered) < 400, "every frame was rendered"
    assert len(sampler._scenes) <= 8 and len(sampler._uniform) <= 16


def test_uniform_candidates_stay_spread_over_a_stream_of_unknown_length() -> None:
    sampler = FrameSampler(4, scene_threshold=1000, duplicate_threshold=0)  # uniform only
    offer_all(sampler, [(i % 256, 0, 0) for i in range(1000)])
    indices = [f.index for f in sampler.picked()]
    assert len(indices) == 4 and indices[0] == 0
    assert max(indices) >= 500, f"all picks at the start of the stream: {indices}"


def test_near_identical_uniform_frames_share_a_payload_but_never_a_stale_one() -> None:
    sampler = FrameSampler(4, scene_threshold=1000)  # uniform only: a drift of 1 level a frame
    rendered = offer_all(sampler, [(128 + i, 128, 128) for i in range(40)])
    assert len(rendered) < 20, "near-identical frames were rendered again"
    for candidate in sampler._uniform:
        source = int(candidate.frame.payload.removeprefix(b"jpeg"))
        assert abs(source - candidate.frame.index) <= 12, "a payload judged for a frame it no longer resembles"


def test_a_header_claim_sets_the_first_stride_only() -> None:
    assert FrameSampler(4, expected_frames=1000).stride == 128  # 8 uniform candidates: 2 x max_frames
    sampler = FrameSampler(4, scene_threshold=1000, duplicate_threshold=0, expected_frames=10)  # 1000 follow
    offer_all(sampler, [(i % 256, 0, 0) for i in range(1000)])
    assert max(f.index for f in sampler.picked()) >= 500


def test_a_slow_drift_is_a_scene_change_too() -> None:
    sampler = FrameSampler(16)
    offer_all(sampler, [(128 + i, 128, 128 - i) for i in range(100)])  # 1 level a frame, never a cut
    assert len(sampler.picked()) >= 3


def test_a_colour_change_at_equal_brightness_is_seen() -> None:
    # Same luma (about 0.299 R + 0.587 G + 0.114 B = 105): a grey thumbnail would call them identical.
    magenta, azure = (255, 0, 255), (0, 128, 255)
    assert abs(difference(thumbnail(solid(magenta)).convert("L"), thumbnail(solid(azure)).convert("L"))) < 2
    sampler = FrameSampler(16)
    offer_all(sampler, [magenta] * 10 + [azure] * 10)
    assert [f.index for f in sampler.picked()] == [0, 10]


def test_alternating_scenes_are_kept_once_each() -> None:
    sampler = FrameSampler(16)
    offer_all(sampler, [GREY, RED] * 200)
    assert [f.index for f in sampler.picked()] == [0, 1]


# ── kinds ─────────────────────────────────────────────────────────────────────────────────────────────────

def test_media_kinds_by_their_first_bytes() -> None:
    assert media_kind(video(1, lambda t: GREY)) == "video"
    assert media_kind(video(1, lambda t: GREY, codec="libvpx", container="webm")) == "video"
    assert media_kind(gif(3, lambda i: GREY)) == "animation"
    assert media_kind(apng_declaring(2)) == "animation"
    assert media_kind(make_image("O1", fmt="PNG")) is None
    assert media_kind(make_image("O1", fmt="WEBP")) is None
    assert media_kind(b"\x00\x00\x00\x18ftypheic" + b"\0" * 32) is None, "HEIC stays a (refused) still image"


# ── the extractor: animations and videos ──────────────────────────────────────────────────────────────────

def test_gif_frames_keep_index_and_time() -> None:
    media = extractor().prepare(gif(60, lambda i: RED if i == 30 else GREY), source="s")
    assert isinstance(media, PreparedMedia) and media.kind == "animation"
    assert [(f.index, f.t_s) for f in media.frames] == [(0, 0.0), (30, 3.0)]
    assert media.payload == media.frames[0].payload and media.mime == "image/jpeg"
    assert media.info.format == "GIF" and (media.info.width, media.info.height) == (64, 64)
    assert Image.open(io.BytesIO(media.frames[1].payload)).convert("RGB").getpixel((32, 32))[0] > 200


@pytest.mark.parametrize("codec,container,fmt", [
    ("libx264", "mp4", "MP4/H264"), ("libvpx-vp9", "webm", "WEBM/VP9"), ("libvpx", "webm", "WEBM/VP8"),
    ("mpeg4", "mov", "MP4/MPEG4"),
])
def test_video_frames_keep_index_and_time(codec: str, container: str, fmt: str) -> None:
    data = video(10, lambda t: RED if 4 <= t < 5 else GREY, codec=codec, container=container)
    media = extractor().prepare(data, source=None)
    assert isinstance(media, PreparedMedia) and media.kind == "video" and media.info.format == fmt
    assert [(f.index, f.t_s) for f in media.frames] == [(0, 0.0), (20, 4.0)]


def test_still_images_are_left_to_the_still_image_path() -> None:
    for data in (make_image("O1", fmt="PNG"), make_image("O1", fmt="GIF"), make_image("O1", fmt="WEBP"),
                 b"not an image", gif(1, lambda i: GREY)):
        assert extractor().prepare(data, source=None) is None


# ── hostile media ─────────────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("name,data,code", [
    ("million-frame GIF", million_frame_gif(), ErrorCode.VIDEO_TOO_LONG),
    ("APNG declaring a million frames", apng_declaring(1_000_000), ErrorCode.VIDEO_TOO_LONG),
    ("declared too long", video(10, lambda t: GREY), ErrorCode.VIDEO_TOO_LONG),
    ("lying about its duration", lying_duration(video(10, lambda t: GREY)), ErrorCode.VIDEO_TOO_LONG),
    ("0 frames", without_samples(video(1, lambda t: GREY)), ErrorCode.VIDEO_EMPTY),
    ("codec not allowed", video(1, lambda t: GREY, codec="ffv1", container="matroska"), ErrorCode.VIDEO_UNSUPPORTED),
    ("header too large to decode", video(0.4, lambda t: GREY, size=(256, 256)), ErrorCode.IMAGE_DECOMPRESSION_BOMB),
    ("truncated", video(2, lambda t: GREY)[:600], ErrorCode.IMAGE_TRUNCATED),
])
def test_hostile_media_fails_with_its_code(name: str, data: bytes, code: ErrorCode) -> None:
    assert failure(extractor(max_video_s=5, max_decoded_frames=2000), data).code == code, name


def test_a_frame_header_claiming_a_huge_size_is_refused_without_allocating_it() -> None:
    data = bytearray(video(0.4, lambda t: GREY, codec="libvpx", container="webm"))
    at = data.find(b"\x9d\x01\x2a")  # the VP8 keyframe start code; 14-bit width and height follow
    data[at + 3:at + 7] = struct.pack("<HH", 16383, 16383)  # 268 M pixels, 400 MB as YUV
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    error = failure(FrameExtractor(FrameLimits(), max_pixels=89_478_485, max_side_px=1024), bytes(data))
    assert error.code in (ErrorCode.IMAGE_TRUNCATED, ErrorCode.IMAGE_DECOMPRESSION_BOMB), error
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before < 200 * 1024**2


def test_the_header_size_is_checked_against_the_pixel_limit() -> None:
    small = FrameExtractor(FrameLimits(), max_pixels=1000, max_side_px=1024)
    assert failure(small, video(0.4, lambda t: GREY)).code == ErrorCode.IMAGE_DECOMPRESSION_BOMB
    assert failure(small, gif(3, lambda i: GREY)).code == ErrorCode.IMAGE_DECOMPRESSION_BOMB


@pytest.mark.parametrize("data", [video(2, lambda t: GREY), gif(20, lambda i: GREY)])
def test_decoding_past_the_deadline_fails_video_decode_timeout(data: bytes) -> None:
    assert failure(extractor(decode_timeout_s=1e-9), data).code == ErrorCode.VIDEO_DECODE_TIMEOUT


def test_a_decoder_that_stalls_between_frames_is_stopped_at_the_deadline() -> None:
    def slow() -> Iterator[DecodedFrame]:
        for index in range(1_000_000):
            yield DecodedFrame(index, None, thumbnail(solid(GREY)), lambda: solid(GREY))
    deadline = Deadline.after(0.2)
    with pytest.raises(ModerationFailed) as caught:
        extractor()._sample(slow(), deadline)
    assert caught.value.code == ErrorCode.VIDEO_DECODE_TIMEOUT
    assert deadline.remaining_s() == 0


def test_the_decode_budget_is_held_and_released() -> None:
    budget = DecodeBudget(total_bytes=100_000, wait_s=0.1)
    extract = FrameExtractor(FrameLimits(), max_pixels=10**8, max_side_px=1024, budget=budget)
    assert failure(extract, video(1, lambda t: GREY)).code == ErrorCode.IMAGE_DECOMPRESSION_BOMB
    roomy = FrameExtractor(FrameLimits(), max_pixels=10**8, max_side_px=1024,
                           budget=DecodeBudget(total_bytes=10**9, wait_s=0.1))
    assert roomy.prepare(gif(5, lambda i: GREY), source=None) is not None
    assert roomy.budget is not None and roomy.budget.reserved_bytes == 0


# ── judging and aggregating ───────────────────────────────────────────────────────────────────────────────

def judgement(rating: str, category: str = "O1: Hate, Humiliation, Harassment", score: float | None = None,
              rationale: str = "r") -> Judgement:
    return Judgement(Assessment(rating, category, rationale), "m", "", 1, score=score)  # type: ignore[arg-type]


FRAMES = [SampledFrame(i, i * 0.5, b"") for i in range(4)]


def test_any_unsafe_frame_makes_the_verdict_unsafe_with_the_most_confident_one() -> None:
    judged = aggregate(FRAMES, [
        judgement("Safe", "NA: None applying", 0.1), judgement("Unsafe", score=0.7, rationale="second"),
        judgement("Unsafe", "O3: Sexual Content", 0.9, rationale="third"), judgement("Safe", "NA: None applying", 0.2),
    ], unsafe_share=0.0)
    assert judged.judgement.assessment.rating == "Unsafe"
    assert judged.judgement.assessment.category == "O3: Sexual Content"
    assert judged.judgement.assessment.rationale == "third" and judged.judgement.score == 0.9
    assert judged.frames is not None and [(f.index, f.t_s, f.rating, f.score) for f in judged.frames] == [
        (0, 0.0, "Safe", 0.1), (1, 0.5, "Unsafe", 0.7), (2, 1.0, "Unsafe", 0.9), (3, 1.5, "Safe", 0.2)]


def test_without_scores_the_first_unsafe_frame_speaks() -> None:
    judged = aggregate(FRAMES, [judgement("Safe", "NA: None applying"), judgement("Unsafe", rationale="first"),
                                judgement("Unsafe", rationale="later"), judgement("Safe", "NA: None applying")], 0.0)
    assert judged.judgement.assessment.rationale == "first"


def test_a_share_policy_needs_that_share_of_unsafe_frames() -> None:
    ratings = [judgement("Unsafe", score=0.9)] + [judgement("Safe", "NA: None applying", 0.1)] * 3
    assert aggregate(FRAMES, ratings, unsafe_share=0.5).judgement.assessment.rating == "Safe"
    assert aggregate(FRAMES, ratings, unsafe_share=0.25).judgement.assessment.rating == "Unsafe"


class CountingJudge:
    def __init__(self, fail_on: bytes | None = None) -> None:
        self.calls: list[bytes] = []
        self.fail_on = fail_on

    def judge(self, image: bytes, mime: str, prompt: str) -> Judgement:
        self.calls.append(image)
        if image == self.fail_on:
            raise InferenceUnavailable("server down")
        return judgement("Unsafe" if image == b"red" else "Safe", score=0.9 if image == b"red" else 0.1)


def test_a_still_image_is_one_request_without_frames() -> None:
    judge = CountingJudge()
    still = PreparedImage(b"grey", "image/jpeg", ImageInfo())
    judged = FrameJudge().judge(judge, still, "p")  # type: ignore[arg-type]
    assert judge.calls == [b"grey"] and judged.frames is None


def media(*payloads: bytes) -> PreparedMedia:
    frames = tuple(SampledFrame(i * 10, float(i), p) for i, p in enumerate(payloads))
    return PreparedMedia(payloads[0], "image/jpeg", ImageInfo(), frames=frames, kind="video")


def frames_observed(kind: str) -> tuple[float, float]:
    """(count, sum) of llavaguard_frames_per_moderation{kind} in this process."""
    def sample(suffix: str) -> float:
        return metrics.REGISTRY.get_sample_value(f"llavaguard_frames_per_moderation_{suffix}", {"kind": kind}) or 0.0
    return sample("count"), sample("sum")


def test_frames_are_judged_together_and_aggregated() -> None:
    judge, frames = CountingJudge(), FrameJudge(concurrency=4)
    count, total = frames_observed("video")
    try:
        judged = frames.judge(judge, media(b"grey", b"red", b"grey2"), "p")  # type: ignore[arg-type]
    finally:
        frames.close()
    assert sorted(judge.calls) == [b"grey", b"grey2", b"red"]
    assert judged.judgement.assessment.rating == "Unsafe"
    assert judged.frames is not None and [f.index for f in judged.frames if f.rating == "Unsafe"] == [10]
    assert frames_observed("video") == (count + 1, total + 3), "the frames judged are a metric"


def test_a_transient_failure_of_one_frame_fails_the_whole_judgement() -> None:
    frames = FrameJudge(concurrency=2)
    try:
        with pytest.raises(InferenceUnavailable):
            frames.judge(CountingJudge(fail_on=b"red"), media(b"grey", b"red", b"x", b"y"), "p")  # type: ignore[arg-type]
    finally:
        frames.close()
