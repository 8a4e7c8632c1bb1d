"""One decoded frame as the sampler sees it, whichever decoder produced it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from worker.errors import ErrorCode, ModerationFailed


@dataclass(frozen=True)
class DecodedFrame:
    index: int
    t_s: float | None
    thumbnail: Image.Image
    """16x16 RGB (sampler.thumbnail), cheap to make for every frame."""
    image: Callable[[], Image.Image]
    """The full frame; called only for frames the sampler keeps, before the next frame is decoded."""


@contextmanager
def decoder_errors(code: ErrorCode, doing: str) -> Iterator[None]:
    """Any exception a decoder raises on hostile data becomes ModerationFailed(`code`); ours pass through."""
    try:
        yield
    except ModerationFailed:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ModerationFailed(ErrorCode.IMAGE_DECOMPRESSION_BOMB, f"{doing}: {exc}") from exc
    except Exception as exc:
        raise ModerationFailed(code, f"{doing}: {str(exc) or type(exc).__name__}") from exc
