"""Image sources: one interface (`ImageSource`) for every place an image comes from, registered by scheme.

    ImageRef ─scheme_of─▶ "https" | "http" | "s3" | "file" | "inline" ─SourceRegistry─▶ ImageSource.fetch ─▶ bytes

A source returns the raw bytes, bounded by `max_bytes` (IMAGE_TOO_LARGE, the same code everywhere), or raises
`ModerationFailed` with its own refusal code; it never decodes (images.py does). The composition root
(worker/composition.py) builds the registry; a new source is one class and one entry there. An unknown scheme
fails FETCH_SCHEME_UNSUPPORTED, like a known scheme this worker is not configured for (`Unconfigured`).
`MemorySource` is the test double shipped beside the real ones (tests/contract/test_image_sources.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.limits import check_byte_size
from worker.models import ImageRef

INLINE = "inline"
"""The registry key of inline bytes (`ImageRef.data`), which have no URL and so no scheme of their own."""


def scheme_of(ref: ImageRef) -> str:
    """The key `ref` is looked up under: its URL's scheme (lower case, "" without one), or INLINE."""
    if ref.data is not None:
        return INLINE
    url = ref.url or ""
    return url.split(":", 1)[0].lower() if ":" in url else ""


class ImageSource(Protocol):
    """Thread-safe: one per worker process serves every thread."""

    def fetch(self, ref: ImageRef) -> bytes:
        """The image's raw bytes; ModerationFailed (FETCH_*, S3_*, FILE_*, IMAGE_TOO_LARGE) if not."""
        ...

    def close(self) -> None: ...


class UrlFetcher(Protocol):
    """What HttpFetcher, S3Fetcher and FileFetcher share: bytes from a URL of their scheme."""

    def fetch(self, url: str) -> bytes: ...

    def close(self) -> None: ...


class UrlSource:
    """An `ImageSource` over a fetcher of URLs (https/http, s3, file)."""

    def __init__(self, fetcher: UrlFetcher) -> None:
        self.fetcher = fetcher

    def fetch(self, ref: ImageRef) -> bytes:
        return self.fetcher.fetch(ref.url or "")

    def close(self) -> None:
        self.fetcher.close()


class InlineSource:
    """Bytes carried in the request itself, held to the same size limit as fetched ones."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def fetch(self, ref: ImageRef) -> bytes:
        data = ref.data or b""
        check_byte_size(data, self.max_bytes)
        return data

    def close(self) -> None:
        pass


class Unconfigured:
    """A scheme this worker knows but was not set up for (s3:// without a client): FETCH_SCHEME_UNSUPPORTED."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def fetch(self, ref: ImageRef) -> bytes:
        raise ModerationFailed(ErrorCode.FETCH_SCHEME_UNSUPPORTED, self.reason)

    def close(self) -> None:
        pass


class MemorySource:
    """Test double: URLs mapped to bytes; a missing URL fails FETCH_NOT_FOUND."""

    def __init__(self, objects: Mapping[str, bytes], max_bytes: int) -> None:
        self.objects = dict(objects)
        self.max_bytes = max_bytes

    def fetch(self, ref: ImageRef) -> bytes:
        url = ref.url or ""
        if url not in self.objects:
            raise ModerationFailed(ErrorCode.FETCH_NOT_FOUND, f"no image at {url[:200]!r}")
        data = self.objects[url]
        check_byte_size(data, self.max_bytes)
        return data

    def close(self) -> None:
        pass


class SourceRegistry:
    """Scheme -> source. Several schemes may share one source (http and https), closed once."""

    def __init__(self, sources: Mapping[str, ImageSource]) -> None:
        self.sources = dict(sources)

    def fetch(self, ref: ImageRef) -> bytes:
        scheme = scheme_of(ref)
        source = self.sources.get(scheme)
        if source is None:
            raise ModerationFailed(
                ErrorCode.FETCH_SCHEME_UNSUPPORTED, f"{scheme or 'scheme-less'} image references are unsupported"
            )
        return source.fetch(ref)

    def close(self) -> None:
        for source in {id(s): s for s in self.sources.values()}.values():
            source.close()
