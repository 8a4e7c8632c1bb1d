"""Intake: from an `ImageRef` (URL, S3 URI or inline bytes) to a validated JPEG ready for the model.

    Intake.load(ref)
    ├── inline bytes ─────────────┐
    ├── s3://bucket/key  S3Fetcher ┼─> prepare_image (images.py) -> PreparedImage
    ├── file:///path     FileFetcher (only beneath LLAVAGUARD_SHARED_ROOT)
    └── http(s)://       HttpFetcher (guarded by AddressGuard, pinned to the checked IP, paced,
                                      at most FETCH_MAX_PER_HOST at once per host: HostGate)

Every bad input ends as `ModerationFailed` with a FETCH_*/S3_*/IMAGE_* code; no third-party exception
leaves this package. The address guard and the pinned request are public for the webhook sender.
"""

from __future__ import annotations

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.addresses import AddressGuard, refusal_reason
from worker.intake.deadline import Deadline
from worker.intake.decode_budget import DecodeBudget
from worker.intake.file_fetch import FileFetcher
from worker.intake.http_fetch import HttpFetcher
from worker.intake.images import PreparedImage, prepare_image
from worker.intake.pinned import HttpResponse, PinnedHttp
from worker.intake.s3_fetch import S3Fetcher
from worker.models import ImageRef

__all__ = [
    "AddressGuard",
    "Deadline",
    "DecodeBudget",
    "HttpFetcher",
    "HttpResponse",
    "Intake",
    "PinnedHttp",
    "PreparedImage",
    "S3Fetcher",
    "prepare_image",
    "refusal_reason",
]


class Intake:
    """Loads images of every kind with one set of limits; thread-safe, build one per worker process."""

    def __init__(
        self, http: HttpFetcher, s3: S3Fetcher | None, max_pixels: int, max_side_px: int, max_bytes: int,
        files: FileFetcher | None = None, max_decode_bytes: int | None = None,
        decode_budget: DecodeBudget | None = None,
    ) -> None:
        self.http = http
        self.s3 = s3
        self.files = files or FileFetcher(None, max_bytes)
        self.max_pixels = max_pixels
        self.max_side_px = max_side_px
        self.max_bytes = max_bytes
        self.max_decode_bytes = max_decode_bytes
        self.decode_budget = decode_budget

    def close(self) -> None:
        self.http.close()

    def load(self, ref: ImageRef) -> PreparedImage:
        data = self.fetch(ref)
        return prepare_image(
            data,
            source=ref.source,
            max_pixels=self.max_pixels,
            max_side_px=self.max_side_px,
            max_bytes=self.max_bytes,
            max_decode_bytes=self.max_decode_bytes,
            budget=self.decode_budget,
        )

    def fetch(self, ref: ImageRef) -> bytes:
        """The raw bytes of the image, from wherever the reference points."""
        if ref.data is not None:
            return ref.data
        url = ref.url or ""
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "s3":
            if self.s3 is None:
                raise ModerationFailed(ErrorCode.FETCH_SCHEME_UNSUPPORTED, "s3:// is not configured here")
            return self.s3.fetch(url)
        if scheme in ("http", "https"):
            return self.http.fetch(url)
        if scheme == "file":
            return self.files.fetch(url)
        raise ModerationFailed(
            ErrorCode.FETCH_SCHEME_UNSUPPORTED, f"{scheme or 'scheme-less'} image references are unsupported"
        )
