"""One typed settings object read from `LLAVAGUARD_*` environment variables.

Only `load_settings()` reads the environment; everything else receives a `Settings`. A bad value fails at
start-up with one line naming the variable (`SettingsError`), never later in the middle of a moderation.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.errors import SettingsError

ENV_PREFIX = "LLAVAGUARD_"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    fetch_connect_timeout_s: float = Field(default=5.0, gt=0)
    fetch_read_timeout_s: float = Field(default=10.0, gt=0)
    fetch_total_timeout_s: float = Field(default=30.0, gt=0)
    fetch_max_redirects: int = Field(default=3, ge=0)

    # Inference.
    inflight_window: int = Field(default=16, ge=1, le=1024)
    """Requests one worker process keeps in flight against the model server."""
    inference_timeout_s: float = Field(default=120.0, gt=0)
    max_parse_attempts: int = Field(default=3, ge=1, le=10)
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 50
    max_tokens: int = 500
    constrained_decoding: bool = True

    # Celery.
    visibility_timeout_s: int = Field(default=3600, ge=5)
    max_retries: int = Field(default=8, ge=0)
    retry_backoff_base_s: float = Field(default=2.0, gt=0)
    retry_backoff_max_s: float = Field(default=300.0, gt=0)
    result_wait_poll_s: float = Field(default=0.2, gt=0)

    # Logging.
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        value = _split_commas(value)
        if isinstance(value, list):
            return [ipaddress.ip_network(str(v), strict=False) for v in value]
        return value

    @field_validator("retry_backoff_max_s")
    @classmethod
    def _backoff_inside_visibility(cls, value: float, info: Any) -> float:
        # A countdown longer than the visibility timeout makes Redis redeliver the retry: it would run twice.
        visibility = info.data.get("visibility_timeout_s")
        if visibility is not None and value >= visibility / 2:
            raise ValueError(f"must be below half of {ENV_PREFIX}VISIBILITY_TIMEOUT_S ({visibility})")
        return value


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (explicit overrides win); raise SettingsError naming the first bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}: {err['msg']}{shown}") from None
