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

from typing import TYPE_CHECKING

from worker.buckets import BucketAllowlist
from worker.errors import ErrorCode, ModerationFailed
from worker.intake.addresses import AddressGuard, refusal_reason
from worker.intake.deadline import Deadline
from worker.intake.decode_budget import DecodeBudget
from worker.intake.file_fetch import FileFetcher
from worker.intake.hosts import HostGate
from worker.intake.http_fetch import HttpFetcher
from worker.intake.images import PreparedImage, prepare_image
from worker.intake.pace import Pace
from worker.intake.pinned import HttpResponse, PinnedHttp
from worker.intake.s3_fetch import S3Fetcher
from worker.models import ImageRef
from worker.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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

    @classmethod
    def from_settings(
        cls, settings: Settings, s3_client: S3Client | None = None, decode_budget: DecodeBudget | None = None,
    ) -> Intake:
        """Without an S3 client, `s3://` references are refused (FETCH_SCHEME_UNSUPPORTED); without a decode
        budget (the composition root passes the process's one), only the per-image decode limit applies."""
        http = HttpFetcher(
            AddressGuard(settings.allowed_networks),
            allow_http=settings.allow_http,
            max_bytes=settings.max_image_bytes,
            connect_timeout_s=settings.fetch_connect_timeout_s,
            read_timeout_s=settings.fetch_read_timeout_s,
            total_timeout_s=settings.fetch_total_timeout_s,
            max_redirects=settings.fetch_max_redirects,
            hosts=HostGate(max_per_host=settings.fetch_max_per_host, wait_s=settings.fetch_host_wait_s,
                           cooloff_s=settings.fetch_slow_host_cooloff_s),
            pace=Pace(min_bytes_per_s=settings.fetch_min_bytes_per_s, window_s=settings.fetch_pace_window_s),
        )
        allowed = BucketAllowlist(settings.s3_allowed_buckets)
        s3 = None if s3_client is None else S3Fetcher(s3_client, settings.max_image_bytes, allowed=allowed)
        files = FileFetcher(settings.shared_root, settings.max_image_bytes)
        return cls(
            http, s3, settings.max_image_pixels, settings.max_image_side_px, settings.max_image_bytes, files,
            settings.max_decode_bytes, decode_budget,
        )

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
