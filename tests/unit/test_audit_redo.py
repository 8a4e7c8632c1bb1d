"""The pieces of redoable audits and the S3 key layout that need no services: names, retry codes, the
configuration diagnosis, and key names that round-trip whatever an id or audit name contains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from producers.bulk.audit import checked_audit_name, default_audit_name
from producers.bulk.diagnosis import configuration_problem
from producers.bulk.summary import Tally
from producers.commands.audit import _retry_codes
from worker.models import ErrorInfo, ImageInfo, PolicyRef, Verdict
from worker.stores.base import VerdictQuery
from worker.stores.s3_layout import entry_key, parse_entry, start_after

ROOT = "p/verdicts/"
AT = datetime(2026, 12, 2, 23, 59, 59, 999999, tzinfo=UTC)


def failed(code: str, message: str, source: str, at: datetime = AT, **extra: object) -> Verdict:
    return Verdict(id="f", status="failed", policy=PolicyRef(name="p"), image=ImageInfo(source=source),
                   error=ErrorInfo(code=code, message=message), created_at=at, completed_at=at, **extra)


def test_default_audit_names_are_stable_and_tell_audits_apart() -> None:
    name = default_audit_name("/data/imagenet/train/", "llavaguard-v1.2", ["O6", "O2"])
    assert name == default_audit_name("/data/imagenet/train", "llavaguard-v1.2", ["O2", "O6"])
    assert name.startswith("train-") and checked_audit_name(name) == name
    assert name != default_audit_name("/data/imagenet/train", "strict", ["O2", "O6"])
    assert default_audit_name("s3://b/uploads/2024/", "p", []).startswith("2024-")
    for bad in ("", "-x", "a/b", "x" * 65, "a,b"):
        with pytest.raises(ValueError, match="audit name"):
            checked_audit_name(bad)


def test_retry_codes() -> None:
    assert _retry_codes(None) is None
    assert _retry_codes("all") == frozenset()
    assert _retry_codes("fetch_scheme_unsupported, FILE_NOT_FOUND") == {"fetch_scheme_unsupported", "file_not_found"}
    with pytest.raises(ValueError, match="unknown error code"):
        _retry_codes("fetch_scheme_unsupported,nope")


@pytest.mark.parametrize(
    ("code", "message", "source", "setting"),
    [
        ("fetch_scheme_unsupported", "file:// images need LLAVAGUARD_SHARED_ROOT set on the worker",
         "file:///d/a.png", "LLAVAGUARD_SHARED_ROOT"),
        ("fetch_scheme_unsupported", "http URLs are not fetched (allowed: https://)", "http://h/a.png",
         "LLAVAGUARD_ALLOW_HTTP"),
        ("fetch_address_refused", "S3 bucket 'b' is not in LLAVAGUARD_S3_ALLOWED_BUCKETS", "s3://b/k",
         "LLAVAGUARD_S3_ALLOWED_BUCKETS"),
        ("file_not_allowed", "outside the shared root", "file:///elsewhere/a.png", "LLAVAGUARD_SHARED_ROOT"),
    ],
)
def test_every_verdict_failing_on_configuration_names_the_setting(
    code: str, message: str, source: str, setting: str
) -> None:
    tally = Tally()
    for _ in range(3):
        tally.add(failed(code, message, source))
    problem = configuration_problem(tally.completed, tally.failed, tally.failures)
    assert problem is not None and f"set {setting}" in problem and "on the workers" in problem


def test_one_image_error_or_one_completed_verdict_is_not_a_configuration_problem() -> None:
    tally = Tally()
    tally.add(failed("fetch_scheme_unsupported", "file:// images need LLAVAGUARD_SHARED_ROOT", "file:///a"))
    tally.add(failed("image_truncated", "image file is truncated", "file:///b"))
    assert configuration_problem(tally.completed, tally.failed, tally.failures) is None
    assert configuration_problem(1, 1, Tally().failures) is None
    assert configuration_problem(0, 0, Tally().failures) is None


@pytest.mark.parametrize("id", ["plain", "a,b=c/d", "ünï %2C", "-"])
@pytest.mark.parametrize("audit", [None, "cats-2026", "a,b"])
def test_entry_keys_round_trip(id: str, audit: str | None) -> None:
    at = AT.astimezone(timezone(timedelta(hours=-8)))
    verdict = failed("image_truncated", "x", "s3://b/k", at=at, audit=audit).model_copy(update={"id": id})
    key = entry_key(ROOT, verdict)
    assert key.startswith(f"{ROOT}dt=2026-12-02/t=235959.999999Z,")
    entry = parse_entry(ROOT, key)
    assert entry is not None
    assert (entry.id, entry.audit, entry.status, entry.rating, entry.completed_at) == (id, audit, "failed", None, AT)
    assert entry.matches(VerdictQuery.build(status="failed", audit=audit, since=AT, until=AT + timedelta(1)))
    assert not entry.matches(VerdictQuery.build(since=AT + timedelta(microseconds=1)))
    assert start_after(ROOT, AT) < key


@pytest.mark.parametrize("key", [
    f"{ROOT}dt=2026-12-02/notes.txt", f"{ROOT}dt=2026-12-02/_SUCCESS", f"{ROOT}dt=2026-13-02/t=000000.000000Z,"
    "id=a,status=failed,rating=-,category=-,audit=-.json", f"{ROOT}dt=2026-12-02/sub/t=1.json",
    f"{ROOT}by-id/a.json",
])
def test_keys_that_are_not_entries_are_ignored(key: str) -> None:
    assert parse_entry(ROOT, key) is None
