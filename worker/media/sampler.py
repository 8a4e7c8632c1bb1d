"""Which frames of an animation or video the model sees: at most `max_frames`, chosen in one pass.

The length of the stream is not trusted (a header can lie about duration and frame count), so the sampler
never needs it: uniform candidates are kept with a stride that doubles whenever they exceed twice the budget
(so they stay evenly spread however long the stream turns out to be), and a frame that differs from the last
scene anchor by `scene_threshold` or more is a scene change (a cut, or a slow drift adding up). Candidates are
compared by tiny colour thumbnails (16x16 RGB, mean absolute difference 0-255): colour rather than grey, so a
change between two colours of the same brightness is still seen. Near-identical candidates are judged once.
Memory is bounded: at most `3 * max_frames` rendered payloads are held at any time.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageChops

THUMBNAIL_SIDE_PX = 16
SCENE_THRESHOLD = 24.0
"""Mean absolute difference (0-255) from the last scene anchor that makes a frame a scene change."""
DUPLICATE_THRESHOLD = 4.0
"""Below this difference two frames are near-identical: only the first is judged (JPEG noise is ~1-2)."""
FIRST_FRAME_SCORE = float("inf")
_LEVELS = list(range(256)) * 3
"""The first frame is always a scene (it is what was judged before issue 10)."""


@dataclass(frozen=True)
class SampledFrame:
    index: int
    """The frame's position among the decoded frames, from 0."""
    t_s: float | None
    """When it is shown, in seconds from the start (None when the stream has no timestamps)."""
    payload: bytes
    """The frame as the model is sent it (the same JPEG a still image would become)."""


@dataclass(frozen=True)
class _Candidate:
    frame: SampledFrame
    thumbnail: Image.Image
    scene_score: float
    rendered: Image.Image | None = None
    """The thumbnail of the frame `frame.payload` was rendered from, when it is another (near-identical) one."""

    @property
    def payload_thumbnail(self) -> Image.Image:
        return self.rendered if self.rendered is not None else self.thumbnail


def thumbnail(image: Image.Image) -> Image.Image:
    """The 16x16 RGB image candidates are compared by (`image` must be RGB already)."""
    return image.resize((THUMBNAIL_SIDE_PX, THUMBNAIL_SIDE_PX), Image.Resampling.BOX, reducing_gap=2.0)


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two thumbnails over all pixels and bands, 0 (equal) to 255 (from the
    histogram: one C call, where ImageStat's per-band Python loops cost ten times more per frame)."""
    histogram = ImageChops.difference(a, b).histogram()
    return float(sum(map(operator.mul, histogram, _LEVELS))) / (sum(histogram) or 1)


class FrameSampler:
    """Offer every decoded frame in order, then `picked()`; not thread-safe (one per moderation)."""

    def __init__(
        self, max_frames: int, *, scene_threshold: float = SCENE_THRESHOLD,
        duplicate_threshold: float = DUPLICATE_THRESHOLD, expected_frames: int | None = None,
    ) -> None:
        """`expected_frames` (what the header claims) only sets the first stride, to render fewer frames that
        are dropped later; a wrong claim costs renders (or spreads the picks less evenly), never coverage."""
        if max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        self.max_frames = max_frames
        self.scene_threshold = scene_threshold
        self.duplicate_threshold = duplicate_threshold
        self.stride = _initial_stride(expected_frames, max_frames)
        self.offered = 0
        self._anchor: Image.Image | None = None
        self._scenes: list[_Candidate] = []
        self._uniform: list[_Candidate] = []

    def offer(self, index: int, t_s: float | None, thumb: Image.Image, render: Callable[[], bytes]) -> None:
        """Consider one frame; `render` (the costly part) is called only if the frame is kept for now."""
        self.offered += 1
        score = self._scene_score(thumb)
        is_uniform = index % self.stride == 0
        kept: _Candidate | None = None
        if score is not None and self._admits_scene(thumb, score):
            kept = _Candidate(SampledFrame(index, t_s, render()), thumb, score)
            self._add_scene(kept)
        if is_uniform:
            kept = kept or self._reused(index, t_s, thumb) or _Candidate(SampledFrame(index, t_s, render()), thumb, 0.0)
            self._add_uniform(kept)

    def picked(self) -> list[SampledFrame]:
        """The frames to judge, in stream order: scene changes first (largest first), then uniform ones
        spread over the stream, each only if not near-identical to one already picked."""
        chosen: list[_Candidate] = []
        ordered = sorted(self._scenes, key=lambda c: -c.scene_score) + _spread(self._uniform)
        for candidate in ordered:
            if len(chosen) >= self.max_frames:
                break
            if not any(self._near(candidate.thumbnail, other.thumbnail) for other in chosen):
                chosen.append(candidate)
        return [c.frame for c in sorted(chosen, key=lambda c: c.frame.index)]

    def _reused(self, index: int, t_s: float | None, thumb: Image.Image) -> _Candidate | None:
        """A candidate sharing the last uniform one's payload, if this frame is near-identical to the frame that
        payload was rendered from (compared with that frame, so a slow drift never reuses a stale payload)."""
        last = self._uniform[-1] if self._uniform else None
        if last is None or not self._near(thumb, last.payload_thumbnail):
            return None
        return _Candidate(SampledFrame(index, t_s, last.frame.payload), thumb, 0.0, last.payload_thumbnail)

    def _scene_score(self, thumb: Image.Image) -> float | None:
        if self._anchor is None:
            self._anchor = thumb
            return FIRST_FRAME_SCORE
        score = difference(thumb, self._anchor)
        if score < self.scene_threshold:
            return None
        self._anchor = thumb
        return score

    def _admits_scene(self, thumb: Image.Image, score: float) -> bool:
        """A new scene that looks like a kept one (A B A B ...) is not kept twice; a full list keeps the largest."""
        if any(self._near(thumb, kept.thumbnail) for kept in self._scenes):
            return False
        return len(self._scenes) < self.max_frames or score > min(c.scene_score for c in self._scenes)

    def _add_scene(self, candidate: _Candidate) -> None:
        self._scenes.append(candidate)
        if len(self._scenes) > self.max_frames:
            self._scenes.remove(min(self._scenes, key=lambda c: c.scene_score))

    def _add_uniform(self, candidate: _Candidate) -> None:
        self._uniform.append(candidate)
        while len(self._uniform) > 2 * self.max_frames:
            self.stride *= 2
            self._uniform = [c for c in self._uniform if c.frame.index % self.stride == 0]

    def _near(self, a: Image.Image, b: Image.Image) -> bool:
        return difference(a, b) < self.duplicate_threshold


def _initial_stride(expected_frames: int | None, max_frames: int) -> int:
    stride = 1
    while expected_frames is not None and stride * 2 * max_frames < expected_frames:
        stride *= 2
    return stride


def _spread(items: list[_Candidate]) -> list[_Candidate]:
    """`items` reordered so that any prefix is spread evenly over the whole list (first, middle, quarters ...)."""
    order: list[int] = []
    seen: set[int] = set()
    step = 1
    while step < len(items):
        step *= 2
    while step >= 1:
        for position in range(0, len(items), step):
            if position not in seen:
                seen.add(position)
                order.append(position)
        step //= 2
    return [items[i] for i in order]
