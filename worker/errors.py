"""Every error the pipeline can raise, split by what the caller must do.

    LlavaguardError
    ├── ModerationFailed      permanent: record a `failed` verdict with `code`, never retry
    │     (bad image, refused address, unknown policy, unparseable model output ...)
    ├── TransientError        retry with backoff: the input is fine, a dependency is not
    │     ├── InferenceUnavailable   model server down, 5xx, 503 queue full, timeouts
    │     ├── ImageSourceUnavailable S3 endpoint unreachable, throttling or 5xx
    │     ├── FetchHostBusy          the image's host has all its fetch slots in use: defer
    │     └── StoreUnavailable       database / S3 unreachable
    └── SettingsError         bad configuration, raised at start-up
          └── StoreNotFound      a reader names a verdict store that does not exist (never created for it)

Third-party exceptions (httpx, botocore, SQLAlchemy, Pillow) are translated into these at the module
boundary that calls the library (`raise X from exc`), so nothing above that boundary imports them.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable codes written into failed verdicts; clients branch on these, so never rename one."""

    REQUEST_INVALID = "request_invalid"
    POLICY_UNKNOWN = "policy_unknown"
    CATEGORY_UNKNOWN = "category_unknown"
    IMAGE_EMPTY = "image_empty"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_NOT_AN_IMAGE = "image_not_an_image"
    IMAGE_FORMAT_UNSUPPORTED = "image_format_unsupported"
    IMAGE_TRUNCATED = "image_truncated"
    IMAGE_DECOMPRESSION_BOMB = "image_decompression_bomb"
    FETCH_SCHEME_UNSUPPORTED = "fetch_scheme_unsupported"
    FETCH_ADDRESS_REFUSED = "fetch_address_refused"
    FETCH_DNS_FAILED = "fetch_dns_failed"
    FETCH_CONNECTION_FAILED = "fetch_connection_failed"
    FETCH_TIMEOUT = "fetch_timeout"
    FETCH_HTTP_STATUS = "fetch_http_status"
    FETCH_NOT_FOUND = "fetch_not_found"
    FETCH_TOO_MANY_REDIRECTS = "fetch_too_many_redirects"
    S3_NOT_FOUND = "s3_not_found"
    S3_ACCESS_DENIED = "s3_access_denied"
    S3_ERROR = "s3_error"
    INFERENCE_REJECTED = "inference_rejected"
    INFERENCE_UNAVAILABLE = "inference_unavailable"
    MODEL_OUTPUT_INVALID = "model_output_invalid"
    FILE_NOT_ALLOWED = "file_not_allowed"
    FILE_NOT_FOUND = "file_not_found"
    WORKER_LOST = "worker_lost"
    FETCH_HOST_BUSY = "fetch_host_busy"  # issue 8 item 9: the image's host kept every fetch slot busy
    VIDEO_UNSUPPORTED = "video_unsupported"  # issue 10: a container or codec outside the allowlist
    VIDEO_TOO_LONG = "video_too_long"  # issue 10: longer than MAX_VIDEO_S, or more frames than MAX_DECODED_FRAMES
    VIDEO_EMPTY = "video_empty"  # issue 10: an animation or video without a single decodable frame
    VIDEO_DECODE_TIMEOUT = "video_decode_timeout"  # issue 10: decoding outlasted FRAMES_DECODE_TIMEOUT_S
    INTERNAL_ERROR = "internal_error"
    """An unexpected error in one item (issue 8): the item fails, its siblings do not."""


class LlavaguardError(Exception):
    """Root of the project's errors."""


class ModerationFailed(LlavaguardError):
    """Permanent failure of one moderation: the verdict becomes `failed` with this code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TransientError(LlavaguardError):
    """A dependency failed in a way that may pass: retry the task with backoff."""

    code: ErrorCode = ErrorCode.INFERENCE_UNAVAILABLE

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InferenceUnavailable(TransientError):
    """The model server is down, overloaded (503 queue full), erroring (5xx) or too slow."""

    code = ErrorCode.INFERENCE_UNAVAILABLE


class ImageSourceUnavailable(TransientError):
    """The image's S3 endpoint is down, throttling or erroring (5xx): the image may be fine, so retry; once
    retries are exhausted the moderation fails with `s3_error`."""

    code = ErrorCode.S3_ERROR


class FetchHostBusy(TransientError):
    """The image's host already has its share of this worker's fetches: defer the moderation (a countdown
    costs no thread) instead of holding a thread; deferrals have their own budget, apart from MAX_RETRIES."""

    code = ErrorCode.FETCH_HOST_BUSY


class StoreUnavailable(TransientError):
    """The verdict store cannot be reached right now."""


class SettingsError(LlavaguardError):
    """A setting is invalid; the message is one line naming the environment variable."""


class StoreNotFound(SettingsError):
    """A reader (`llavaguard get`/`export`, the SDK's `get`) names a store that does not exist: it is not
    created (only the workers create their store), so a wrong `LLAVAGUARD_STORE_URL` is said, not hidden."""


class OutboxUnavailable(StoreUnavailable):
    """The webhook outbox (Redis) cannot record a delivery: the moderation task retries until it can,
    because a verdict whose event was never recorded would silently lose its webhook."""


class DecodeMemoryBusy(TransientError):
    """Other images held this worker's decode-memory budget for longer than the wait allows (issue 8 item 2):
    the image fits, just not now, so retry; if it never fits, the moderation fails `image_decompression_bomb`."""

    code = ErrorCode.IMAGE_DECOMPRESSION_BOMB
class IdempotencyConflict(LlavaguardError, ValueError):
    """Issue 8 item 5: an idempotency key reused for a different request (another image or other options).

    Raised by the SDK before anything is published; the HTTP API answers it with 409 `idempotency_conflict`."""

    def __init__(self, message: str, *, index: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.index = index


class ReviewUnavailable(StoreUnavailable):
    """Issue 11: the review queue or the retained copies (Redis) cannot be written: the moderation task retries,
    because an item meant for a human must not silently skip the queue."""


class ReviewNotFound(LlavaguardError, LookupError):
    """Issue 11: no verdict with this id was ever queued for review (the API answers 404)."""


class ReviewConflict(LlavaguardError):
    """Issue 11: the item was labelled already, differently (the API answers 409); a label is recorded once."""
