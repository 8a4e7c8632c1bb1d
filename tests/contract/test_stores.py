"""The verdict store contract: `TestVerdictStoreContract` runs unchanged against every implementation.

Real services, no skips: SQLite on a temporary file, PostgreSQL (a database shared by the session, emptied
before each test), S3 on a moto server (a bucket per test), and the in-memory double. Below the contract:
what only the SQL store has (migrations, several processes on one database), what only the S3 store has
(key layout), and `open_store`'s URL parsing.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config
from sqlalchemy import column, select, table

from tests import services
from worker.errors import ErrorCode, SettingsError, StoreUnavailable
from worker.models import ErrorInfo, ImageInfo, PolicyRef, ReviewInfo, Verdict
from worker.stores import (
    MemoryVerdictStore,
    S3VerdictStore,
    SqlVerdictStore,
    VerdictQuery,
    VerdictStore,
    open_store,
)
from worker.stores.engine import UtcDateTime, make_engine
from worker.stores.migrations import LATEST_VERSION, MIGRATIONS, current_version, migrate, schema_migrations

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
THREADS = 8


def completed(
    id: str, *, at: datetime = T0, rating: str = "Unsafe", category: str = "O4: Nudity Content", **extra: Any
) -> Verdict:
    return Verdict.model_validate({
        "id": id, "status": "completed", "rating": rating, "category": category,
        "rationale": "The image shows ...", "policy": {"name": "llavaguard-v1.2", "sha256": "ab" * 32},
        "model": "AIML-TUDA/LlavaGuard-v1.2-7B-OV",
        "image": {"sha256": "cd" * 32, "width": 640, "height": 480, "format": "JPEG",
                  "source": "https://images.example/cat.jpg"},
        "created_at": at - timedelta(seconds=3), "completed_at": at, **extra,
    })


def failed(id: str, *, at: datetime = T0, audit: str | None = None) -> Verdict:
    return Verdict(
        audit=audit,
        id=id, status="failed", policy=PolicyRef(name="llavaguard-v1.2"), image=ImageInfo(source="s3://b/k.png"),
        error=ErrorInfo(code=ErrorCode.IMAGE_TRUNCATED, message="image file is truncated"),
        created_at=at - timedelta(seconds=1), completed_at=at,
    )


# -- one store per backend -------------------------------------------------------------------------------


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/verdicts.db"


@pytest.fixture()
def pg_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied: as fresh as a new one, without creating one per test."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS verdicts, schema_migrations")
    return postgres_url


def _s3_store(request: pytest.FixtureRequest, prefix: str = "tenant-a/moderation") -> S3VerdictStore:
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("bucket")
    return S3VerdictStore(bucket, prefix, boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"))


OPENERS: dict[str, Callable[[pytest.FixtureRequest], VerdictStore]] = {
    "memory": lambda request: MemoryVerdictStore(),
    "sqlite": lambda request: SqlVerdictStore(request.getfixturevalue("sqlite_url")),
    "postgresql": lambda request: SqlVerdictStore(request.getfixturevalue("pg_url")),
    "s3": _s3_store,
}


@pytest.fixture(params=sorted(OPENERS))
def store(request: pytest.FixtureRequest) -> Iterator[VerdictStore]:
    opened = OPENERS[request.param](request)
    yield opened
    opened.close()


# -- the contract ----------------------------------------------------------------------------------------


def ids(verdicts: list[Verdict]) -> list[str]:
    return [v.id for v in verdicts]


query = VerdictQuery.build


@pytest.fixture()
def populated(store: VerdictStore) -> VerdictStore:
    """Five verdicts an hour apart, saved out of order, some with a non-UTC offset."""
    for verdict in (
        completed("e", at=T0 + timedelta(hours=4), audit="cats"),
        completed("b", at=(T0 + timedelta(hours=1)).astimezone(IST)),
        completed("a", at=T0, rating="Safe", category="NA: None applying", audit="cats"),
        failed("d", at=(T0 + timedelta(hours=3)).astimezone(IST), audit="cats"),
        completed("c", at=T0 + timedelta(hours=2), category="O1: Hate, Humiliation, Harassment", audit="dogs"),
    ):
        assert store.save(verdict)
    return store


class TestVerdictStoreContract:
    def test_is_a_verdict_store(self, store: VerdictStore) -> None:
        assert isinstance(store, VerdictStore)

    def test_completed_verdict_round_trips_every_field(self, store: VerdictStore) -> None:
        verdict = completed("round-trip", at=datetime(2024, 5, 1, 17, 30, 0, 123456, tzinfo=IST), metadata={
            "tenant": "acme", "tags": ["a", "b"], "nested": {"depth": {"n": 1, "ok": True, "none": None}},
            "unicode": "Grüße ✓", "number": 1.5,
        })
        assert store.save(verdict) is True
        got = store.get("round-trip")
        assert got == verdict
        assert got is not None and got.model_dump_json() == verdict.model_dump_json()
        assert got.completed_at.utcoffset() == timedelta(hours=5, minutes=30)

    def test_failed_verdict_round_trips(self, store: VerdictStore) -> None:
        verdict = failed("broken")
        assert store.save(verdict) is True
        got = store.get("broken")
        assert got is not None and got.model_dump_json() == verdict.model_dump_json()
        assert got.error == ErrorInfo(code="image_truncated", message="image file is truncated")

    def test_get_unknown_is_none(self, store: VerdictStore) -> None:
        assert store.get("never-saved") is None

    def test_second_save_returns_false_and_the_first_verdict_stays(self, store: VerdictStore) -> None:
        first = completed("once", metadata={"delivery": 1})
        second = completed("once", rating="Safe", category="NA: None applying", metadata={"delivery": 2})
        assert store.save(first) is True
        assert store.save(second) is False
        assert store.save(first) is False
        got = store.get("once")
        assert got is not None and got.model_dump_json() == first.model_dump_json()
        assert store.count() == 1

    def test_concurrent_saves_of_one_id_store_exactly_one(self, store: VerdictStore) -> None:
        for round_ in range(3):
            id = f"raced-{round_}"
            barrier = threading.Barrier(THREADS)

            def save(thread: int, id: str = id, barrier: threading.Barrier = barrier) -> bool:
                barrier.wait(timeout=30)
                return store.save(completed(id, metadata={"thread": thread}))

            with ThreadPoolExecutor(THREADS) as pool:
                outcomes = list(pool.map(save, range(THREADS)))
            assert outcomes.count(True) == 1, outcomes
            stored = store.get(id)
            assert stored is not None and stored.metadata == {"thread": outcomes.index(True)}
        assert store.count() == 3

    def test_get_many_returns_the_known_ones(self, store: VerdictStore) -> None:
        for id in ("m1", "m2", "m3"):
            store.save(completed(id))
        got = store.get_many(["m1", "m3", "unknown", "m1"])
        assert sorted(got) == ["m1", "m3"]
        assert got["m3"] == completed("m3")
        assert store.get_many([]) == {}

    def test_count(self, store: VerdictStore) -> None:
        assert store.count() == 0
        for i in range(5):
            store.save(completed(f"c{i}"))
        store.save(completed("c0"))
        assert store.count() == 5

    # record_review (issue 11): the one update, of `review` and `decision` alone

    def test_record_review_sets_the_label_and_final_decision_and_keeps_the_model_answer(
        self, store: VerdictStore,
    ) -> None:
        pending = ReviewInfo(status="pending", reason="review_band", requested_at=T0)
        model = completed("rv", decision="review", review=pending, score=0.6, audit="q1")
        store.save(model)
        label = ReviewInfo(status="reviewed", reason="review_band", requested_at=T0, rating="Safe",
                           category="NA: None applying", note="a statue", reviewer="key_ab", reviewed_at=T0)
        got = store.record_review("rv", label, "allow")
        assert got is not None and got.review == label and got.decision == "allow"
        stored = store.get("rv")
        assert stored == got
        assert stored.model_dump(exclude={"review", "decision"}) == model.model_dump(exclude={"review", "decision"})
        assert stored.rating == "Unsafe" and stored.category == "O4: Nudity Content"  # the model's, unchanged
        assert ids(store.list(query(rating="Unsafe", audit="q1"))) == ["rv"]
        assert store.list(query(audit="q1"))[0].decision == "allow"  # listings read the reviewed verdict too
        assert store.get_many(["rv"])["rv"].review == label
        assert store.count() == 1
        assert store.save(model) is False  # still write-once: a redelivered save changes nothing
        assert store.get("rv") == got

    def test_record_review_of_an_unknown_id_is_none_and_stores_nothing(self, store: VerdictStore) -> None:
        label = ReviewInfo(status="reviewed", reason="quality_sample", requested_at=T0, rating="Unsafe")
        assert store.record_review("never-saved", label, "block") is None
        assert store.count() == 0 and store.get("never-saved") is None


    # list

    def test_list_ordered_by_completed_at(self, populated: VerdictStore) -> None:
        assert ids(populated.list(query())) == ["a", "b", "c", "d", "e"]

    def test_list_by_rating(self, populated: VerdictStore) -> None:
        assert ids(populated.list(query(rating="Unsafe"))) == ["b", "c", "e"]
        assert ids(populated.list(query(rating="safe"))) == ["a"]

    @pytest.mark.parametrize("category", ["O4", "o4", "O4: Nudity Content"])
    def test_list_by_category_code_or_full_name(self, populated: VerdictStore, category: str) -> None:
        assert ids(populated.list(query(category=category))) == ["b", "e"]

    def test_list_by_rating_and_category(self, populated: VerdictStore) -> None:
        assert ids(populated.list(query(rating="Safe", category="NA"))) == ["a"]
        assert ids(populated.list(query(rating="Safe", category="O4"))) == []

    def test_list_since_inclusive_until_exclusive(self, populated: VerdictStore) -> None:
        window = populated.list(query(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3)))
        assert ids(window) == ["b", "c"]
        assert ids(populated.list(query(since=T0 + timedelta(hours=3)))) == ["d", "e"]
        assert ids(populated.list(query(until=T0 + timedelta(hours=1)))) == ["a"]

    def test_list_since_and_until_compare_instants_whatever_the_offset(self, populated: VerdictStore) -> None:
        since = (T0 + timedelta(hours=1)).astimezone(IST)
        until = (T0 + timedelta(hours=2, microseconds=1)).astimezone(timezone(timedelta(hours=-7)))
        assert ids(populated.list(query(since=since, until=until))) == ["b", "c"]
        assert ids(populated.list(query(since=T0 + timedelta(hours=1, microseconds=1)))) == ["c", "d", "e"]

    def test_list_limit(self, populated: VerdictStore) -> None:
        assert ids(populated.list(query(limit=2))) == ["a", "b"]
        assert ids(populated.list(query(rating="Unsafe", limit=1))) == ["b"]
        assert populated.list(query(limit=0)) == []
        assert len(populated.list(query(limit=None))) == 5

    def test_list_by_status(self, populated: VerdictStore) -> None:
        assert ids(populated.list(query(status="failed"))) == ["d"]
        assert ids(populated.list(query(status="Completed"))) == ["a", "b", "c", "e"]

    def test_list_by_audit(self, populated: VerdictStore) -> None:
        assert ids(populated.list(query(audit="cats"))) == ["a", "d", "e"]
        assert ids(populated.list(query(audit="dogs"))) == ["c"]
        assert populated.list(query(audit="birds")) == []

    def test_list_by_decision(self, store: VerdictStore) -> None:
        for id, decision in (("r1", "review"), ("b1", "block"), ("r2", "review"), ("none", None)):
            store.save(completed(id, decision=decision, thresholds={"source": "settings", "unsafe": 0.5}))
        assert ids(store.list(query(decision="review"))) == ["r1", "r2"]
        assert ids(store.list(query(decision="Block", rating="Unsafe"))) == ["b1"]
        assert store.list(query(decision="allow")) == []
        assert len(store.list(query())) == 4
        with pytest.raises(ValueError, match="unknown decision 'maybe'"):
            store.list(query(decision="maybe"))

    def test_list_every_field_at_once(self, populated: VerdictStore) -> None:
        everything = query(audit="cats", status="completed", rating="Unsafe", category="O4",
                           since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=5), limit=10)
        assert ids(populated.list(everything)) == ["e"]
        assert ids(populated.list(query(audit="cats", status="completed", limit=1))) == ["a"]

    def test_list_default_limit_is_100(self, store: VerdictStore) -> None:
        for i in range(103):
            store.save(completed(f"v{i:03d}", at=T0 + timedelta(seconds=i)))
        assert ids(store.list(query())) == [f"v{i:03d}" for i in range(100)]
        assert len(store.list(query(limit=None))) == 103

    def test_list_ties_are_ordered_by_id_code_point(self, store: VerdictStore) -> None:
        for id in ("b-2", "a-3", "B-1", "_-4"):
            store.save(completed(id))
        assert ids(store.list(query())) == ["B-1", "_-4", "a-3", "b-2"]

    @pytest.mark.parametrize(
        "bad",
        [{"rating": "Maybe"}, {"category": "O10"}, {"category": "O4: Nudity"}, {"limit": -1}, {"status": "done"}],
    )
    def test_list_bad_filters_are_refused(self, store: VerdictStore, bad: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            store.list(query(**bad))


# -- SQL only: migrations and several processes ------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


class TestSqlStore:
    def test_migrations_are_idempotent(self, sql_url: str) -> None:
        engine = make_engine(sql_url)
        try:
            assert current_version(engine) == 0
            assert migrate(engine) == LATEST_VERSION == 3
            assert migrate(engine) == 3
            assert current_version(engine) == 3
            with engine.connect() as conn:
                assert list(conn.scalars(select(schema_migrations.c.version))) == [1, 2, 3]
        finally:
            engine.dispose()

    def test_construction_migrates_unless_told_not_to(self, sql_url: str) -> None:
        untouched = SqlVerdictStore(sql_url, migrate=False)
        try:
            assert current_version(untouched.engine) == 0
        finally:
            untouched.close()
        for _ in range(2):
            store = SqlVerdictStore(sql_url)
            try:
                assert current_version(store.engine) == LATEST_VERSION
            finally:
                store.close()

    def test_engines_migrating_concurrently_do_not_fail(self, sql_url: str) -> None:
        engines = [make_engine(sql_url) for _ in range(4)]
        barrier = threading.Barrier(len(engines))

        def run(engine: Any) -> int:
            barrier.wait(timeout=30)
            return migrate(engine)

        try:
            with ThreadPoolExecutor(len(engines)) as pool:
                assert list(pool.map(run, engines)) == [LATEST_VERSION] * 4
            with engines[0].connect() as conn:
                assert list(conn.scalars(select(schema_migrations.c.version))) == [1, 2, 3]
        finally:
            for engine in engines:
                engine.dispose()

    def test_processes_opening_and_saving_at_once_store_exactly_one(self, sql_url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(4), ctx.Queue()
        processes = [
            ctx.Process(target=_open_and_save, args=(sql_url, i, barrier, results)) for i in range(4)
        ]
        for process in processes:
            process.start()
        try:
            outcomes = dict(results.get(timeout=120) for _ in processes)
        finally:
            for process in processes:
                process.join(30)
            results.close()
            results.join_thread()
        assert sorted(outcomes) == [0, 1, 2, 3] and list(outcomes.values()).count(True) == 1
        store = SqlVerdictStore(sql_url)
        try:
            stored = store.get("raced-by-processes")
            assert stored is not None and outcomes[stored.metadata["process"]] is True
        finally:
            store.close()

    def test_a_version_1_database_gains_the_audit_column_and_keeps_its_rows(self, sql_url: str) -> None:
        engine = make_engine(sql_url)
        try:
            with engine.begin() as conn:
                MIGRATIONS[0].apply(conn)
                schema_migrations.create(conn)
                conn.execute(schema_migrations.insert().values(version=1, applied_at=T0))
                old = completed("before-audits")
                version_1 = table("verdicts", *(column(name) for name in ("id", "status", "rating", "category",
                                  "policy_name", "body")), column("created_at", UtcDateTime()),
                                  column("completed_at", UtcDateTime()))
                conn.execute(version_1.insert().values(
                    id=old.id, status="completed", rating="Unsafe", category=old.category, policy_name="p",
                    body=old.model_dump_json(), created_at=old.created_at, completed_at=old.completed_at,
                ))
        finally:
            engine.dispose()
        store = SqlVerdictStore(sql_url)
        try:
            assert current_version(store.engine) == LATEST_VERSION
            assert store.save(completed("audited", audit="cats"))
            assert ids(store.list(query())) == ["audited", "before-audits"], "same instant: by id"
            assert ids(store.list(query(audit="cats"))) == ["audited"]
            assert store.save(completed("decided", decision="review"))
            assert ids(store.list(query(decision="review"))) == ["decided"]
            assert store.list(query(decision="block")) == []  # rows from before decisions have none
        finally:
            store.close()

    def test_sqlite_runs_in_wal_mode(self, sqlite_url: str) -> None:
        store = SqlVerdictStore(sqlite_url)
        try:
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        finally:
            store.close()

    def test_unreachable_postgresql_is_store_unavailable(self) -> None:
        with pytest.raises(StoreUnavailable, match="migrating the schema failed"):
            SqlVerdictStore(f"postgresql://nobody@127.0.0.1:{services.free_port()}/nothing")

    def test_unopenable_sqlite_is_store_unavailable(self, tmp_path: Path) -> None:
        with pytest.raises(StoreUnavailable):
            SqlVerdictStore(f"sqlite:///{tmp_path}/missing-dir/verdicts.db")


def _open_and_save(url: str, process: int, barrier: Any, results: Any) -> None:
    """Runs in a fresh process: open (and so migrate) at the same moment as the others, then race to save."""
    barrier.wait(timeout=60)
    store = open_store(url)
    try:
        results.put((process, store.save(completed("raced-by-processes", metadata={"process": process}))))
    finally:
        store.close()


# -- S3 only: key layout -----------------------------------------------------------------------------------


class TestS3Store:
    @pytest.mark.parametrize(
        ("prefix", "root"), [("", "verdicts/"), ("/tenant/a/", "tenant/a/verdicts/"), ("p", "p/verdicts/")]
    )
    def test_a_verdict_by_id_and_in_its_day_partition(
        self, request: pytest.FixtureRequest, s3: Any, bucket: str, prefix: str, root: str
    ) -> None:
        store = _s3_store(request, prefix)
        try:
            store.save(completed("k1", at=datetime(2024, 5, 1, 23, 59, 59, 5, tzinfo=IST)))
            store.save(failed("k,2=x/y", audit="a b"))
            listed = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"])
            assert listed == [
                f"{root}by-id/k,2=x/y.json", f"{root}by-id/k1.json",
                f"{root}dt=2024-05-01/t=120000.000000Z,id=k%2C2%3Dx%2Fy,status=failed,rating=-,category=-,"
                "audit=a%20b,decision=-.json",
                f"{root}dt=2024-05-01/t=182959.000005Z,id=k1,status=completed,rating=Unsafe,category=O4,"
                "audit=-,decision=-.json",
            ]
            for key in listed:
                assert Verdict.model_validate_json(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        finally:
            store.close()

    def test_keys_written_before_decisions_still_list(
        self, request: pytest.FixtureRequest, s3: Any, bucket: str
    ) -> None:
        store = _s3_store(request, "")
        try:
            old = completed("old")
            key = ("verdicts/dt=2024-05-01/t=120000.000000Z,id=old,status=completed,rating=Unsafe,category=O4,"
                   "audit=-.json")
            s3.put_object(Bucket=bucket, Key=key, Body=old.model_dump_json().encode())
            s3.put_object(Bucket=bucket, Key="verdicts/by-id/old.json", Body=old.model_dump_json().encode())
            store.save(completed("new", decision="block"))
            assert ids(store.list(query())) == ["new", "old"]
            assert ids(store.list(query(decision="block"))) == ["new"]
        finally:
            store.close()

    def test_prefixes_keep_stores_apart(self, request: pytest.FixtureRequest) -> None:
        one, two = _s3_store(request, "one"), _s3_store(request, "one/two")
        try:
            assert one.save(completed("x")) and two.save(completed("x"))
            assert one.count() == 1 and two.count() == 1
        finally:
            one.close()
            two.close()

    def test_head_then_put_fallback_still_refuses_a_second_save(self, s3_endpoint: str, bucket: str) -> None:
        client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        store = S3VerdictStore(bucket, "", client, conditional_writes=False)
        try:
            assert store.save(completed("h")) is True
            assert store.save(completed("h", rating="Safe", category="NA: None applying")) is False
            assert store.get("h") == completed("h")
        finally:
            store.close()

    def test_missing_bucket_is_store_unavailable(self, s3_endpoint: str) -> None:
        client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        store = S3VerdictStore("no-such-bucket-here", "", client)
        try:
            with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
                store.save(completed("x"))
        finally:
            store.close()

    def test_unreachable_endpoint_is_store_unavailable(self) -> None:
        config = Config(retries={"max_attempts": 1}, connect_timeout=1)
        endpoint = f"http://127.0.0.1:{services.free_port()}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)
        store = S3VerdictStore("bucket", "", client)
        try:
            with pytest.raises(StoreUnavailable, match="reading a verdict failed"):
                store.get("x")
        finally:
            store.close()


# -- open_store --------------------------------------------------------------------------------------------


class TestOpenStore:
    def test_sqlite(self, sqlite_url: str) -> None:
        store = open_store(sqlite_url)
        try:
            assert isinstance(store, SqlVerdictStore) and store.engine.dialect.name == "sqlite"
        finally:
            store.close()

    @pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
    def test_postgresql_schemes_use_psycopg_3(self, pg_url: str, scheme: str) -> None:
        store = open_store(scheme + "://" + pg_url.split("://", 1)[1])
        try:
            assert isinstance(store, SqlVerdictStore)
            assert store.engine.url.drivername == "postgresql+psycopg"
            assert store.save(completed("pg")) and store.get("pg") == completed("pg")
        finally:
            store.close()

    @pytest.mark.parametrize(
        ("path", "key"), [("/some/prefix/", "some/prefix/verdicts/by-id/x.json"), ("", "verdicts/by-id/x.json")]
    )
    def test_s3(self, s3_endpoint: str, s3: Any, bucket: str, path: str, key: str) -> None:
        store = open_store(f"s3://{bucket}{path}", s3_endpoint_url=s3_endpoint)
        try:
            assert isinstance(store, S3VerdictStore)
            assert store.save(completed("x"))
            assert key in [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        finally:
            store.close()

    @pytest.mark.parametrize(
        "url", ["redis://localhost:6379/0", "verdicts.db", "mysql://u:hunter2@h/db", "postgresql+psycopg2://u@h/db"]
    )
    def test_unsupported_scheme(self, url: str) -> None:
        with pytest.raises(SettingsError, match=r"^LLAVAGUARD_STORE_URL: unsupported scheme") as caught:
            open_store(url)
        assert "hunter2" not in str(caught.value)

    @pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "sqlite://", "sqlite:///:memory:"])
    def test_unusable_urls(self, url: str) -> None:
        with pytest.raises(SettingsError, match=r"^LLAVAGUARD_STORE_URL: "):
            open_store(url)
