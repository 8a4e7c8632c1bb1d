"""Judge the sampled frames of one moderation as one unit of work, and aggregate them into one judgement.

The frames go to the model server at once (on a small pool shared by the worker process: the judge is
thread-safe and the backend bounds what is in flight). A frame failing transiently fails the whole judgement
with that error, so the moderation is retried as a whole (frames already judged are judged again: simple, and
a verdict never mixes answers from two attempts); the first permanent failure fails it the same way.
Aggregation: Unsafe when at least `unsafe_share` of the judged frames are Unsafe (0: any one frame); the
verdict's category, rationale and score are those of the most confident frame of that rating (highest score
where scores exist, else the first). A still image is one request, exactly as before issue 10.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from worker.inference.llavaguard import Judgement, LlavaGuardJudge
from worker.intake.images import PreparedImage
from worker.media.extract import PreparedMedia
from worker.media.sampler import SampledFrame
from worker.models import FrameVerdict
from worker.observability import metrics


@dataclass(frozen=True)
class MediaJudgement:
    judgement: Judgement
    """The verdict's judgement: the representative frame's (or the still image's)."""
    frames: list[FrameVerdict] | None
    """Per judged frame; None for a still image."""


class FrameJudge:
    """Thread-safe; one per worker process (composition root). Its pool starts with the first animation."""

    def __init__(self, *, concurrency: int = 8, unsafe_share: float = 0.0) -> None:
        if not 0.0 <= unsafe_share <= 1.0:
            raise ValueError("unsafe_share must be between 0 and 1")
        self.concurrency = concurrency
        self.unsafe_share = unsafe_share
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def judge(self, judge: LlavaGuardJudge, prepared: PreparedImage, prompt: str) -> MediaJudgement:
        if not isinstance(prepared, PreparedMedia):
            metrics.frames_judged("still", 1)
            return MediaJudgement(judge.judge(prepared.payload, prepared.mime, prompt), None)
        judgements = self._judge_all(judge, prepared.frames, prepared.mime, prompt)
        metrics.frames_judged(prepared.kind, len(judgements))
        return aggregate(prepared.frames, judgements, self.unsafe_share)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def _judge_all(
        self, judge: LlavaGuardJudge, frames: Sequence[SampledFrame], mime: str, prompt: str
    ) -> list[Judgement]:
        if len(frames) == 1:
            return [judge.judge(frames[0].payload, mime, prompt)]
        pool = self._executor()
        futures = [pool.submit(judge.judge, frame.payload, mime, prompt) for frame in frames]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for future in pending:
                future.cancel()
            raise _exception(failed)
        return [future.result() for future in futures]

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="llavaguard-frames")
            return self._pool


def aggregate(frames: Sequence[SampledFrame], judgements: Sequence[Judgement], unsafe_share: float) -> MediaJudgement:
    """One judgement for the whole media, and what each frame was judged."""
    unsafe = sum(1 for j in judgements if j.assessment.rating == "Unsafe")
    rating = "Unsafe" if unsafe >= max(1.0, unsafe_share * len(judgements)) else "Safe"
    candidates = [i for i, j in enumerate(judgements) if j.assessment.rating == rating]
    chosen = max(candidates, key=lambda i: (_score(judgements[i]), -i))
    representative = judgements[chosen]
    per_frame = [
        FrameVerdict(index=f.index, t_s=f.t_s, rating=j.assessment.rating, category=j.assessment.category,
                     score=j.score)
        for f, j in zip(frames, judgements, strict=True)
    ]
    return MediaJudgement(representative, per_frame)


def _score(judgement: Judgement) -> float:
    return judgement.score if judgement.score is not None else -1.0


def _exception(future: Future[Judgement]) -> BaseException:
    exc = future.exception()
    assert exc is not None
    return exc
