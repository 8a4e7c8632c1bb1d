"""One typed settings object read from `LLAVAGUARD_*` environment variables.

Only `load_settings()` reads the environment; the composition root (worker/composition.py) turns a `Settings`
into objects, which take explicit arguments. A bad value fails at start-up with one line naming the variable
(`SettingsError`), never later in the middle of a moderation.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Leaves only (tests/unit/test_architecture.py): settings import nothing from the packages they configure.
from worker.bucket_names import bucket_name_problem
from worker.errors import SettingsError
from worker.queues import DELIVERIES_TTL_S
from worker.webhook_format import DEFAULT_SCHEDULE_S as WEBHOOK_SCHEDULE_S
from worker.webhook_format import EVENT_TYPES, parse_secret

ENV_PREFIX = "LLAVAGUARD_"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SECRET_FIELDS = frozenset({"webhook_secret", "sglang_api_key", "api_keys", "api_admin_keys", "api_reviewer_keys",
                           "callback_secret",
                           "inference_api_key"})
"""Never echoed in an error message."""


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Where things are.
    redis_url: str = "redis://localhost:6379/0"
    sglang_url: str = "http://localhost:30000"
    sglang_api_key: str | None = None
    # Issue 14 item 1: which backend judges. `sglang` reads only the two settings above, as it always did.
    backend: Literal["sglang", "vllm", "openai", "transformers"] = "sglang"
    inference_url: str | None = None
    """Server root for `vllm` and `openai` (unset: `sglang_url`, so a server swap at one address is one setting)."""
    inference_api_key: str | None = None
    """Bearer key for `vllm` and `openai` (unset: `sglang_api_key`)."""
    inference_model: str | None = None
    """Model name sent by `vllm` (unset: the server's `/v1/models`) and `openai` (required there)."""
    top_logprobs: int = Field(default=5, ge=0, le=20)
    """Alternatives per token asked for, for the score (issue 11); 0: no log-probabilities, no score."""
    unsafe_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Issue 11: `decision` is block at or above this score, for every policy without a `<name>.thresholds.json`
    (unset: the model's rating decides, as before)."""
    review_band: Annotated[tuple[float, float] | None, NoDecode] = None
    """Issue 11: `low,high` (e.g. `0.3,0.7`): scores in [low, high] are decided `review`; needs UNSAFE_THRESHOLD."""
    store_url: str = "sqlite:///./verdicts.db"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    policy_dir: Path | None = None
    """Folder of extra named policies: `<name>.txt` is the policy `<name>`."""

    # Intake limits.
    allowed_networks: Annotated[list[IPNetwork], NoDecode] = Field(default_factory=list)
    allow_http: bool = False
    """Accept plain `http://` image URLs (https is always accepted)."""
    max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=89_478_485, gt=0)
    max_image_side_px: int = Field(default=1024, ge=0)
    """Downscale so the longer side is at most this before sending (0: never); fewer image tokens."""
    resize_filter: Literal["lanczos", "bicubic", "bilinear", "box", "nearest"] = "box"
    """How an image above `max_image_side_px` is shrunk, after `reduce()` by whole factors; the server
    resamples again, so a sharper filter buys little (README "Image path": CPU per filter)."""
    jpeg_quality: int = Field(default=90, ge=1, le=95)
    """Quality of the JPEG a rendered image is sent as (the image tokens depend on the size, not this)."""
    jpeg_draft_undershoot: float = Field(default=0.1, ge=0, lt=0.5)
    """A JPEG may be decoded at 1/2, 1/4 or 1/8 scale when that lands up to this fraction below
    `max_image_side_px` (4032x3024 -> 1008x756, same image tokens), skipping the resize (0: never below)."""
    image_passthrough: bool = True
    """Send an image that already conforms (JPEG/PNG/WebP, RGB or grey, within the size, upright) as its
    original bytes instead of decoding, resizing and re-encoding it; it is still validated."""
    fetch_connect_timeout_s: float = Field(default=5.0, gt=0)
    fetch_read_timeout_s: float = Field(default=10.0, gt=0)
    fetch_total_timeout_s: float = Field(default=30.0, gt=0)
    fetch_max_redirects: int = Field(default=3, ge=0)

    # Decode memory (issue 8 item 2): estimated from the header before decoding, see worker/intake/decode_cost.
    max_decode_bytes: int = Field(default=1024**3, gt=0)
    """One image whose decode would need more memory than this fails `image_decompression_bomb`."""
    decode_memory_bytes: int = Field(default=0, ge=0)
    """Memory all concurrent decodes of one worker process share (0: half the process's cgroup memory limit,
    else of physical memory, at most 4 GiB); an image needing more than this is refused too."""
    decode_wait_s: float = Field(default=60.0, gt=0)
    """How long an image waits for decode memory before its moderation is retried later."""

    # Animations and video (issue 10, worker/media): sampled frames are judged, the verdict aggregates them.
    max_frames: int = Field(default=16, ge=1, le=256)
    """Most frames of one animation or video sent to the model (each costs one request: frames x image tokens)."""
    max_video_s: float = Field(default=120.0, gt=0)
    """Animations and videos longer than this (declared or found while decoding) fail `video_too_long`."""
    max_decoded_frames: int = Field(default=10_000, ge=1)
    """Frames decoded at most, whatever the header claims; more fail `video_too_long` (a million-frame GIF)."""
    frames_decode_timeout_s: float = Field(default=30.0, gt=0)
    """Decoding all frames of one animation or video takes at most this long, else `video_decode_timeout`."""
    frames_unsafe_share: float = Field(default=0.0, ge=0, le=1)
    """Share of judged frames that must be Unsafe for an Unsafe verdict (0: any one frame suffices)."""
    frames_concurrency: int = Field(default=8, ge=1, le=256)
    """Frame requests one worker process has in flight for its animations and videos."""

    # Inference.
    inflight_window: int = Field(default=512, ge=1, le=4096)
    """The most requests one worker process keeps in flight against the model server (issue 15: the upper
    bound of the adaptive window, and the exact window with `adaptive_window=false`). 512 covers SGLang's
    default batch (CUDA graphs up to 256) with room for its queue."""
    inflight_window_min: int = Field(default=4, ge=1, le=4096)
    """The adaptive window never shrinks below this."""
    adaptive_window: bool = True
    """Find the server's capacity from round trips and 503s (worker/inference/adaptive_window.py); false:
    always `inflight_window` in flight, as before issue 15."""
    inference_timeout_s: float = Field(default=120.0, gt=0)
    max_parse_attempts: int = Field(default=3, ge=1, le=10)
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 50
    max_tokens: int = 500
    constrained_decoding: bool = True
    constraint: Literal["auto", "regex", "json_schema", "none"] = "auto"
    """Issue 14 item 3: where regex -> json_schema -> none starts (`auto`: at the top), skipping what the backend
    does not honour; a server refusing one steps down to the next. `constrained_decoding=false` means `none`."""
    # The in-process backend (LLAVAGUARD_BACKEND=transformers, issue 14; `pip install '.[transformers]'`).
    model_path: str | None = None
    """The checkpoint: a local folder or a hub id, e.g. `AIML-TUDA/LlavaGuard-v1.2-0.5B-OV-hf` (QwenGuard too)."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """`auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`."""
    model_dtype: str = Field(default="auto", pattern=r"^(auto|float32|float16|bfloat16)$")
    """`auto`: bfloat16 on CUDA, float32 on the CPU."""
    batch_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    """How long the first request waits for others to share its generation (batch size: `inflight_window`)."""

    # Matching re-uploads (issue 12): the verdict cache in `redis_url`, see worker/matching/cache.py.
    match: Literal["off", "exact", "pdq"] = "pdq"
    """`exact`: reuse the verdict of an image with the same SHA-256; `pdq`: also of a near PDQ hash; `off`: never."""
    match_pdq_distance: int = Field(default=31, ge=0, le=31)
    """A near match is at most this many PDQ bits apart (HMA's default); above 31 the index would miss matches."""
    match_ttl_s: int = Field(default=30 * 24 * 3600, ge=120)
    """An answer is reused for at least half of this and at most this long after it was judged."""
    match_max_entries: int = Field(default=2_000_000, ge=2)
    """Judged images the cache holds at most (all policies and models together); see README for the bytes."""

    # Celery.
    visibility_timeout_s: int = Field(default=60, ge=5)
    """Issue 8, item 3: a held message is redelivered this long after its worker stopped renewing its lease
    (a living worker renews every third of it, worker/redelivery/lease.py)."""
    max_retries: int = Field(default=8, ge=0)
    retry_backoff_base_s: float = Field(default=2.0, gt=0)
    retry_backoff_max_s: float = Field(default=300.0, gt=0)
    result_wait_poll_s: float = Field(default=0.2, gt=0)
    # Issue 8, item 2 (delivery counting, worker/redelivery/deliveries.py).
    max_deliveries: int = Field(default=3, ge=1, le=100)
    """Deliveries of one message before it ends `worker_lost` (its workers kept dying on it)."""

    # Poison messages (issue 8, item 1): refused before decoding, kept in `llavaguard:deadletter`.
    max_message_bytes: int = Field(default=48 * 1024 * 1024, ge=1024)
    """Larger queue messages are dead-lettered unread (fits a 20 MiB image inline, base64 twice, plus headroom)."""
    deadletter_max_entries: int = Field(default=1000, ge=1)
    """The dead-letter list is trimmed to this many entries (each keeps at most `max_message_bytes` raw)."""

    # Hash banks (issue 12 item 3, worker/banks): `llavaguard banks ...`, matched before the verdict cache.
    banks_enabled: bool = True
    """Check every image against the banks in Redis (with no banks, a refresh costs two tiny reads)."""
    bank_max_entries: int = Field(default=100_000, ge=1, le=10_000_000)
    """Per bank; every worker process holds all banks in memory (about 1.5 KB per PDQ entry; 100,000 take
    about 3 s to index, while lookups go on with the previous copy)."""
    bank_refresh_s: float = Field(default=5.0, ge=0, le=3600)
    """How stale a worker's copy of the banks may be: a change reaches every worker within this."""

    # Logging.
    log_level: str = "INFO"
    log_json: bool = True

    # Producers: HTTP ingestion API and bulk audits.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Keys accepted as `Authorization: Bearer <key>` by `llavaguard api` (comma-separated); none: it won't start."""
    api_max_batch_items: int = Field(default=1000, ge=1)
    """Most items one `POST /v1/moderations/batch` may carry."""
    shared_root: Path | None = None
    """Absolute folder `file://` images must lie in (a mount shared by producers and workers); none: refused."""
    audit_batch_size: int = Field(default=64, ge=1, le=1000)
    """Images per `bulk` queue message published by `llavaguard audit`."""
    audit_backlog: int = Field(default=100_000, ge=1)
    """Most images `llavaguard audit` keeps queued ahead of the workers (it pauses while the `bulk` queue holds
    more): about three minutes of work for a GPU judging ~500 images/s, ~15 MB of Redis at ~134 B an image."""

    # The API's documents (issue 8, item 11).
    api_public_docs: bool = True
    """Serve /docs, /redoc and /openapi.json to anyone (they describe the API, never a key or verdict);
    false: they are not served at all."""

    # Operations: metrics and health.
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    """The host's workers serve Prometheus metrics on this port (0: off), one of them at a time, summing all."""
    # Issue 8 item 4 (two workers on one host): loopback by default (compose sets 0.0.0.0 where Prometheus
    # scrapes); the workers of one host and port share one multiprocess directory, default under the temp dir.
    metrics_host: str = "127.0.0.1"
    metrics_dir: Path | None = None
    """Multiprocess metrics directory of the workers of a host (default: <tmp>/llavaguard-metrics-<uid>-<port>)."""
    # Issue 9 item 5: the API's own metrics, on a bind of their own (Prometheus scrapes without an API key).
    api_metrics_port: int = Field(default=9109, ge=0, le=65535)
    """`llavaguard api` serves `/metrics` on this port (0: off), summing its `--workers` processes."""
    api_metrics_host: str = "127.0.0.1"
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    """How often a worker's consumer loop refreshes its heartbeat in Redis (it expires after 3 intervals)."""
    health_stall_s: float = Field(default=120.0, gt=0)
    """`llavaguard health` fails when a worker with free slots has received nothing this long while its queues
    held messages (the consumer stopped consuming)."""

    # Issue 8 item 6: which buckets `s3://` images may name (none: `s3://` images are refused).
    s3_allowed_buckets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated bucket names; every other bucket (ARNs and aliases included) fails fetch_address_refused."""

    # Issue 8 item 9: slow or hostile image servers get a bounded share of a worker's threads.
    fetch_max_per_host: int = Field(default=4, ge=1, le=1024)
    """Concurrent image fetches from one host name per worker process; more wait briefly, then are deferred."""
    fetch_host_wait_s: float = Field(default=0.5, ge=0, le=30)
    """How long a fetch waits for a busy host before its moderation is deferred (fetch_host_busy)."""
    fetch_host_max_deferrals: int = Field(default=10, ge=0, le=100)
    """Deferrals for a busy host a moderation may take (apart from MAX_RETRIES); then it fails fetch_host_busy."""
    fetch_min_bytes_per_s: int = Field(default=4096, ge=0)
    """A response body slower than this over a pace window is aborted as fetch_timeout (0: no pace rule)."""
    fetch_pace_window_s: float = Field(default=5.0, gt=0, le=60)
    """The pace window; the response headers must also arrive within two windows of connecting."""
    fetch_slow_host_cooloff_s: float = Field(default=60.0, ge=0, le=3600)
    """After 3 fetches in a row from a host timed out, its images fail fetch_timeout at once for this long."""

    @field_validator("s3_allowed_buckets", mode="before")
    @classmethod
    def _parse_buckets(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("s3_allowed_buckets")
    @classmethod
    def _valid_buckets(cls, value: list[str]) -> list[str]:
        for name in value:
            problem = bucket_name_problem(name)
            if problem is not None:
                raise ValueError(f"{name!r} {problem}")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("shared_root")
    @classmethod
    def _absolute_root(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    # Webhooks (worker/notify): signed, retried Standard Webhooks deliveries of verdict events.
    webhook_url: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Endpoints (comma-separated) receiving every event; operator configuration, so not SSRF-guarded."""
    webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list, validate_default=True)
    """`whsec_<base64>` secrets (comma-separated): each one signs every message, for rotation."""
    webhook_events: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Events besides `moderation.unsafe` (always on): `moderation.completed`, `moderation.failed`."""
    webhook_timeout_s: float = Field(default=15.0, gt=0, le=120)
    webhook_retry_schedule_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(WEBHOOK_SCHEDULE_S)
    )
    """Delays before the 2nd, 3rd ... attempt; after the last attempt the delivery is dead-lettered."""
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    """Webhook requests one worker process has in flight, on threads of their own."""
    webhook_poll_interval_s: float = Field(default=2.0, gt=0, le=60)
    webhook_retention_s: int = Field(default=30 * 24 * 3600, ge=60)
    """How long finished (delivered or dead-lettered) deliveries and their attempts are kept."""

    @field_validator("webhook_url", "webhook_events", "webhook_retry_schedule_s", mode="before")
    @classmethod
    def _webhook_lists(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _webhook_secrets(cls, value: object, info: Any) -> object:
        secrets = _split_commas(value)
        if isinstance(secrets, list):
            for position, secret in enumerate(secrets, start=1):
                parse_secret(secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret), position)
            if not secrets and info.data.get("webhook_url"):
                raise ValueError(f"required when {ENV_PREFIX}WEBHOOK_URL is set (webhooks are always signed)")
        return secrets

    @field_validator("webhook_events")
    @classmethod
    def _webhook_events(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r} (known: {', '.join(EVENT_TYPES)})")
        return value

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _webhook_schedule(cls, value: list[float]) -> list[float]:
        if any(delay <= 0 for delay in value) or len(value) > 30:
            raise ValueError("expected at most 30 positive delays in seconds")
        return value

    # Issue 8 items 5 and 10: admin API keys; per-owner callback secrets derived from a master.
    api_admin_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Keys (comma-separated) accepted like API_KEYS that also read every verdict, whoever submitted it."""
    callback_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """`whsec_` masters (comma-separated, for rotation) each owner's callback secret is derived from; none:
    derived from WEBHOOK_SECRET under a distinct label."""

    @field_validator("api_admin_keys", "api_reviewer_keys", mode="before")
    @classmethod
    def _parse_admin_keys(cls, value: object) -> object:
        return _split_commas(value)

    # Issue 11 items 3-4: human review (worker/review).
    api_reviewer_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Keys (comma-separated) for the review endpoints and page only; producer and admin keys get 403 there."""
    review_sample_allow: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of `allow` verdicts also queued for review (quality sampling), chosen by id: 0.01 is 1 %."""
    review_sample_block: float = Field(default=0.0, ge=0.0, le=1.0)
    """Share of `block` verdicts also queued for review."""
    review_retention_s: int = Field(default=7 * 24 * 3600, ge=1)
    """How long the retained copy of an image under review is kept (a Redis TTL); then it is gone."""
    review_max_retained: int = Field(default=10_000, ge=1)
    """Most retained copies at once (each at most one prepared JPEG); beyond it items queue without an image."""
    review_keep_after_label: bool = False
    """Keep the retained copy until its retention ends even once labelled (default: deleted with the label)."""

    @field_validator("callback_secret", mode="before")
    @classmethod
    def _callback_secrets(cls, value: object) -> object:
        secrets = _split_commas(value)
        if isinstance(secrets, list):
            for position, secret in enumerate(secrets, start=1):
                parse_secret(secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret), position)
        return secrets

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        value = _split_commas(value)
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @field_validator("review_band", mode="before")
    @classmethod
    def _parse_band(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        parts = _split_commas(value)
        if isinstance(parts, list) and len(parts) not in (0, 2):
            raise ValueError("expected two numbers low,high (e.g. 0.3,0.7)")
        return parts or None

    @field_validator("review_band")
    @classmethod
    def _band(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0.0 <= value[0] <= value[1] <= 1.0:
            raise ValueError("expected low,high with 0 <= low <= high <= 1")
        return value

    @model_validator(mode="after")
    def _band_needs_threshold(self) -> Settings:
        if self.review_band is not None and self.unsafe_threshold is None:
            raise SettingsError(f"{ENV_PREFIX}REVIEW_BAND: needs {ENV_PREFIX}UNSAFE_THRESHOLD too")
        return self

    @model_validator(mode="after")
    def _openai_names_its_model(self) -> Settings:
        # Raised as is (not a ValueError), so the one-line message names the variable that is missing.
        if self.backend == "openai" and not self.inference_model:
            raise SettingsError(f"{ENV_PREFIX}INFERENCE_MODEL: required when {ENV_PREFIX}BACKEND=openai")
        return self

    @field_validator("retry_backoff_max_s")
    @classmethod
    def _backoff_inside_delivery_count(cls, value: float) -> float:
        # A held countdown is renewed like any held message, so it may outlast the visibility timeout; but the
        # delivery count of a message must outlive the longest wait between two of its deliveries.
        if value >= DELIVERIES_TTL_S / 2:
            raise ValueError(f"must be below {DELIVERIES_TTL_S // 2} s (half the lifetime of a delivery count)")
        return value


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (explicit overrides win); raise SettingsError naming the first bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        given = err.get("input")
        shown = "" if isinstance(given, dict) or field in SECRET_FIELDS else f" (got {given!r})"
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}: {err['msg']}{shown}") from None
