"""The S3 store's layout as readers that are not this project's code see it (moto's S3 server, no internet).

boto3 lists one day's Hive partition by prefix and reads it; DuckDB's `read_json` reads a partition synced to
a local folder; the store's own get and list are counted request by request (a botocore event hook), so
"get is one request" and "list reads only what it returns" are measured, not assumed. Objects of the earlier
`<prefix>/verdicts/<id>.json` layout keep working.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import pytest

from tests.contract.test_stores import completed, failed
from worker.models import Verdict
from worker.stores import S3VerdictStore, VerdictQuery

DAY1 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
DAY2 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
PREFIX = "tenant-a/moderation"
ROOT = f"{PREFIX}/verdicts/"


class CountedClient:
    """A boto3 client whose calls are counted by operation (`GetObject`, `ListObjectsV2`, ...)."""

    def __init__(self, endpoint: str) -> None:
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self.calls: Counter[str] = Counter()
        self.client.meta.events.register("before-call.s3", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        self.calls[event_name.rsplit(".", 1)[-1]] += 1

    def during(self) -> Counter[str]:
        self.calls.clear()
        return self.calls


@pytest.fixture()
def counted(s3_endpoint: str) -> CountedClient:
    return CountedClient(s3_endpoint)


@pytest.fixture()
def store(counted: CountedClient, bucket: str) -> Iterator[S3VerdictStore]:
    opened = S3VerdictStore(bucket, PREFIX, counted.client)
    yield opened
    opened.close()


def two_days() -> list[Verdict]:
    return [
        completed("d1-unsafe", at=DAY1, audit="cats"),
        completed("d1-safe", at=DAY1 + timedelta(minutes=1), rating="Safe", category="NA: None applying"),
        completed("d2-unsafe", at=DAY2, audit="cats"),
        completed("d2-safe", at=DAY2 + timedelta(minutes=1), rating="Safe", category="NA: None applying",
                  audit="cats"),
        failed("d2-failed", at=DAY2 + timedelta(minutes=2), audit="cats"),
        *[completed(f"d2-more-{i:02d}", at=DAY2 + timedelta(hours=1, seconds=i)) for i in range(20)],
    ]


@pytest.fixture()
def saved(store: S3VerdictStore) -> S3VerdictStore:
    for verdict in two_days():
        assert store.save(verdict)
    return store


def test_boto3_reads_one_day_by_its_prefix(saved: S3VerdictStore, s3: Any, bucket: str) -> None:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{ROOT}dt=2026-12-02/")
    keys = [item["Key"] for item in listed["Contents"]]
    bodies = [Verdict.model_validate_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) for key in keys]
    assert sorted(v.id for v in bodies) == sorted(v.id for v in two_days() if v.completed_at.day == 2)
    unsafe = [key for key in keys if ",rating=Unsafe," in key]  # what a shell script greps for
    assert len(unsafe) == 21


def test_duckdb_reads_a_synced_partition(saved: S3VerdictStore, s3: Any, bucket: str, tmp_path: Path) -> None:
    """As after `aws s3 sync s3://bucket/<prefix>/verdicts/dt=2026-12-02/ ...`: DuckDB on local files."""
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"{ROOT}dt=")["Contents"]:
        target = tmp_path / item["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, item["Key"], str(target))
    pattern = str(tmp_path / ROOT / "dt=*" / "*.json")
    rows = duckdb.sql(
        f"SELECT dt, status, count(*) AS n FROM read_json('{pattern}', hive_partitioning = true) "
        "WHERE dt = '2026-12-02' GROUP BY ALL ORDER BY status"
    ).fetchall()
    assert [(str(dt), status, n) for dt, status, n in rows] == [
        ("2026-12-02", "completed", 22), ("2026-12-02", "failed", 1)
    ]
    unsafe = duckdb.sql(
        f"SELECT id FROM read_json('{tmp_path / ROOT / 'dt=2026-12-01' / '*.json'}') WHERE rating = 'Unsafe'"
    ).fetchall()
    assert unsafe == [("d1-unsafe",)]


def test_get_is_one_request(saved: S3VerdictStore, counted: CountedClient) -> None:
    saved.get("d2-safe")  # the first call of a store object also asks once whether legacy objects exist
    calls = counted.during()
    assert saved.get("d2-failed") == failed("d2-failed", at=DAY2 + timedelta(minutes=2), audit="cats")
    assert calls == Counter(GetObject=1)
    calls = counted.during()
    assert saved.get("never-saved") is None
    assert calls == Counter(GetObject=1)


def test_list_reads_only_the_verdicts_it_returns(saved: S3VerdictStore, counted: CountedClient) -> None:
    calls = counted.during()
    day2_failed = saved.list(VerdictQuery.build(status="failed", since=DAY2, until=DAY2 + timedelta(days=1)))
    assert [v.id for v in day2_failed] == ["d2-failed"]
    assert calls == Counter(ListObjectsV2=1, GetObject=1)  # the partitions' key names, then one body

    calls = counted.during()
    safe = saved.list(VerdictQuery.build(rating="Safe", limit=None))
    assert [v.id for v in safe] == ["d1-safe", "d2-safe"] and calls["GetObject"] == 2

    calls = counted.during()
    first = saved.list(VerdictQuery.build(audit="cats", status="completed", limit=2))
    assert [v.id for v in first] == ["d1-unsafe", "d2-unsafe"] and calls["GetObject"] == 2

    calls = counted.during()
    later = saved.list(VerdictQuery.build(since=DAY2 + timedelta(hours=1, seconds=18)))
    assert [v.id for v in later] == ["d2-more-18", "d2-more-19"] and calls["GetObject"] == 2


def test_objects_of_the_earlier_layout_keep_working(
    s3_endpoint: str, s3: Any, bucket: str, counted: CountedClient
) -> None:
    old = completed("legacy-1", at=DAY1, rating="Safe", category="NA: None applying")
    s3.put_object(Bucket=bucket, Key=f"{ROOT}legacy-1.json", Body=old.model_dump_json().encode())
    store = S3VerdictStore(bucket, PREFIX, counted.client)
    try:
        assert store.save(completed("new-1", at=DAY2))
        assert store.get("legacy-1") == old
        assert store.get_many(["legacy-1", "new-1"]).keys() == {"legacy-1", "new-1"}
        assert [v.id for v in store.list(VerdictQuery.build(rating="Safe"))] == ["legacy-1"]
        assert [v.id for v in store.list(VerdictQuery.build())] == ["legacy-1", "new-1"]
        assert store.count() == 2
        assert store.save(completed("legacy-1", at=DAY2)) is False, "the first verdict of an id still wins"
        assert store.get("legacy-1") == old
    finally:
        store.close()


def test_a_save_that_loses_repairs_a_partition_copy_the_winner_never_wrote(
    store: S3VerdictStore, s3: Any, bucket: str
) -> None:
    """As if the winning worker died between its two writes: the redelivered task's save restores the copy."""
    first = completed("half-written", at=DAY2, audit="cats")
    s3.put_object(Bucket=bucket, Key=f"{ROOT}by-id/half-written.json", Body=first.model_dump_json().encode())
    assert store.list(VerdictQuery.build()) == []
    assert store.save(completed("half-written", at=DAY2 + timedelta(hours=1), rating="Safe",
                                category="NA: None applying")) is False
    assert store.list(VerdictQuery.build(audit="cats")) == [first]
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"{ROOT}dt=")["Contents"]]
    assert keys == [f"{ROOT}dt=2026-12-02/t=090000.000000Z,id=half-written,status=completed,rating=Unsafe,"
                    "category=O4,audit=cats,decision=-.json"]
