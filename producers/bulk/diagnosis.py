"""Why every verdict of an audit failed, when the reason is the workers' configuration, not the images.

An audit whose every image fails with `fetch_scheme_unsupported` (workers without `LLAVAGUARD_SHARED_ROOT`),
`file_not_allowed` (another shared root on the workers) or `fetch_address_refused` (a bucket or network the
workers refuse) judged nothing: `llavaguard audit` says which setting is missing on the workers and exits
non-zero, and `--retry-failed` redoes it once the workers are fixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worker.errors import ErrorCode
from worker.models import Verdict

CONFIGURATION_CODES = frozenset({
    ErrorCode.FETCH_SCHEME_UNSUPPORTED, ErrorCode.FILE_NOT_ALLOWED, ErrorCode.FETCH_ADDRESS_REFUSED,
})
_SETTING = re.compile(r"\bLLAVAGUARD_[A-Z0-9_]+\b")
_BY_SCHEME = {
    "file": "LLAVAGUARD_SHARED_ROOT", "http": "LLAVAGUARD_ALLOW_HTTP",
    "s3": "LLAVAGUARD_S3_ALLOWED_BUCKETS (and LLAVAGUARD_S3_ENDPOINT_URL for a non-AWS S3)",
}
_BY_CODE: dict[str, str] = {
    ErrorCode.FILE_NOT_ALLOWED: "LLAVAGUARD_SHARED_ROOT",
    ErrorCode.FETCH_ADDRESS_REFUSED: "LLAVAGUARD_ALLOWED_NETWORKS",
}


@dataclass
class FailureSample:
    """The first failed verdict seen per error code: enough to name the setting behind it."""

    by_code: dict[str, Verdict] = field(default_factory=dict)

    def add(self, verdict: Verdict) -> None:
        if verdict.error is not None:
            self.by_code.setdefault(verdict.error.code, verdict)


def configuration_problem(completed: int, failed: int, sample: FailureSample) -> str | None:
    """What to fix on the workers when every verdict failed with a configuration error; None otherwise."""
    if completed or not failed or not sample.by_code or not set(sample.by_code) <= CONFIGURATION_CODES:
        return None
    causes = []
    for code, verdict in sorted(sample.by_code.items()):
        message = verdict.error.message if verdict.error else ""
        causes.append(f"{code} ({message}): set {_setting(code, message, verdict)} on the workers")
    return ("every verdict of this audit failed because of the workers' configuration, not the images: "
            + "; ".join(causes) + ". Fix the workers (restart them), then run the audit again with --retry-failed")


def _setting(code: str, message: str, verdict: Verdict) -> str:
    named = _SETTING.findall(message)
    if named:
        return " / ".join(dict.fromkeys(named))
    scheme = (verdict.image.source or "").split("://", 1)[0].lower()
    if code == ErrorCode.FETCH_SCHEME_UNSUPPORTED and scheme in _BY_SCHEME:
        return _BY_SCHEME[scheme]
    return _BY_CODE.get(code, "the image-source settings")
