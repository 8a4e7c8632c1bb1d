"""Banks in a real Redis: the store's bounds and idempotence, the matcher's precedence and reloads, and
`llavaguard banks ...` round trips and hostile hash files (the CLI run in-process, as an operator runs it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from producers.cli import main
from worker.banks.entries import Entry, make_config
from worker.banks.matcher import BankMatcher
from worker.banks.store import BankError, BankStore
from worker.commands import banks as banks_command

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
SHA = "a" * 64
MD5 = "b" * 32


@pytest.fixture()
def bank_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis[bytes]]:
    """A database of the session's redis-server of its own, empty at the start; the CLI points at it."""
    url = redis_url.rsplit("/", 1)[0] + "/9"
    client: redis.Redis[bytes] = redis.Redis.from_url(url)
    client.flushdb()
    monkeypatch.setenv("LLAVAGUARD_REDIS_URL", url)
    monkeypatch.setenv("LLAVAGUARD_BANK_MAX_ENTRIES", "5")
    yield client
    client.close()


def _flip(hex_value: str, count: int, offset: int = 0) -> str:
    """`count` (at most 32) bits flipped, 8 apart from `offset`: spread over the index's segments."""
    value = int(hex_value, 16)
    for bit in range(offset, offset + count * 8, 8):
        value ^= 1 << bit
    return f"{value:064x}"


def test_imports_are_idempotent_and_bounded(bank_redis: redis.Redis[bytes]) -> None:
    store = BankStore(bank_redis, max_entries=3)
    store.create(make_config("B", "block", "O1", None))
    with pytest.raises(BankError, match="exists"):
        store.create(make_config("B", "allow", None, None))
    assert store.add("B", [Entry("pdq", PDQ), Entry("sha256", SHA)]) == 2
    assert store.add("B", [Entry("pdq", PDQ, "new id"), Entry("sha256", SHA)]) == 0
    assert store.count("B") == 2
    with pytest.raises(BankError, match="more than 3"):
        store.add("B", [Entry("md5", MD5), Entry("md5", "c" * 32)])
    assert store.count("B") == 2, "a refused import writes nothing"
    assert {e.entry_id for e in store.entries("B") if e.hash_type == "pdq"} == {"new id"}
    assert store.discard("B", PDQ.upper()) == 1 and store.count("B") == 1
    store.remove("B")
    assert store.configs() == [] and store.count("B") == 0
    with pytest.raises(BankError, match="no bank"):
        store.add("B", [Entry("md5", MD5)])


def test_the_matcher_prefers_exact_then_block_and_reloads_on_change(bank_redis: redis.Redis[bytes]) -> None:
    store = BankStore(bank_redis, max_entries=100)
    store.create(make_config("ALLOW", "allow", None, 8))
    store.create(make_config("BLOCK", "block", "O4", None))
    store.add("ALLOW", [Entry("pdq", PDQ, "sticker-1")])
    store.add("BLOCK", [Entry("pdq", _flip(PDQ, 3)), Entry("md5", MD5, "md5-entry")])
    matcher = BankMatcher(store, refresh_s=0)

    hit = matcher.lookup(None, None, PDQ, 100)
    assert hit is not None and (hit.bank.name, hit.distance) == ("BLOCK", 3), "block wins over allow"
    hit = matcher.lookup(None, MD5, _flip(PDQ, 20), 100)
    assert hit is not None and (hit.bank.name, hit.hash_type, hit.entry_id) == ("BLOCK", "md5", "md5-entry")
    assert matcher.lookup(None, None, PDQ, 49) is None, "a low-quality PDQ matches nothing"
    assert matcher.lookup(None, None, _flip(_flip(PDQ, 32, 4), 8, 1), 100) is None, "beyond both banks' distances"

    store.discard("BLOCK", _flip(PDQ, 3))
    hit = matcher.lookup(None, None, PDQ, 100)
    assert hit is not None and (hit.bank.name, hit.entry_id, hit.distance) == ("ALLOW", "sticker-1", 0)
    assert matcher.lookup(None, None, _flip(PDQ, 9), 100) is None, "beyond the allow bank's own distance 8"


def test_the_matcher_waits_refresh_s_and_keeps_its_copy_when_redis_fails(bank_redis: redis.Redis[bytes]) -> None:
    now = [0.0]
    store = BankStore(bank_redis, max_entries=100)
    store.create(make_config("B", "block", "O2", None))
    matcher = BankMatcher(store, refresh_s=5.0, clock=lambda: now[0])
    assert matcher.lookup(SHA, None, None, None) is None
    store.add("B", [Entry("sha256", SHA)])
    assert matcher.lookup(SHA, None, None, None) is None, "not looked at again within refresh_s"
    now[0] = 5.0
    assert matcher.lookup(SHA, None, None, None) is not None

    bank_redis.hset("llavaguard:banks", "BROKEN", "[1]")  # a config edited by hand: the last copy is kept
    bank_redis.hincrby("llavaguard:banks:versions", "B", 1)
    now[0] = 7.5
    assert matcher.lookup(SHA, None, None, None) is not None
    bank_redis.hdel("llavaguard:banks", "BROKEN")

    dead = BankMatcher(BankStore(_unreachable(), 10), refresh_s=0)
    assert dead.lookup(SHA, None, None, None) is None, "fails open: the model judges"
    matcher.store = BankStore(_unreachable(), 10)
    now[0] = 10.0
    assert matcher.lookup(SHA, None, None, None) is not None, "the last copy is kept"


def _unreachable() -> redis.Redis[bytes]:
    return redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["banks", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_round_trip_in_every_format(bank_redis: redis.Redis[bytes], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "create", "NCII", "--action", "block", "--category", "O4", "--pdq-distance", "20")
    assert code == 0 and json.loads(out) == {"name": "NCII", "action": "block", "category": "O4: Nudity Content",
                                             "pdq_distance": 20}
    assert _cli(capsys, "create", "stickers", "--action", "allow")[0] == 0
    files = {
        "csv": f"hash_type,hash,id\npdq,{PDQ},te-1\n",
        "jsonl": json.dumps({"hash_type": "sha256", "hash": SHA}) + "\n",
        "hma": json.dumps({"md5": MD5}) + "\n",
        "te": f"pdq {_flip(PDQ, 1)}\n",
    }
    for fmt, text in files.items():
        path = tmp_path / f"hashes.{fmt}"
        path.write_text(text)
        code, out, err = _cli(capsys, "import", "NCII", str(path), "--format", fmt)
        assert code == 0, err
        assert json.loads(out)["new"] == 1
        assert json.loads(_cli(capsys, "import", "NCII", str(path), "--format", fmt)[1])["new"] == 0, "idempotent"
    code, out, _ = _cli(capsys, "list")
    assert [(b["name"], b["entries"]) for b in map(json.loads, out.splitlines())] == [("NCII", 4), ("stickers", 0)]
    code, out, _ = _cli(capsys, "export", "NCII", "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "hash_type,hash,id" and f"pdq,{PDQ},te-1" in out.splitlines()
    exported = tmp_path / "export.csv"
    exported.write_text(out)
    assert _cli(capsys, "create", "COPY", "--action", "block", "--category", "O4")[0] == 0
    assert json.loads(_cli(capsys, "import", "COPY", str(exported), "--format", "csv")[1])["new"] == 4
    assert _cli(capsys, "remove", "NCII", "--entry", SHA)[0] == 0
    assert _cli(capsys, "remove", "NCII", "--entry", SHA)[0] == 1, "gone already"
    assert _cli(capsys, "remove", "NCII")[0] == 0
    assert [b["name"] for b in map(json.loads, _cli(capsys, "list")[1].splitlines())] == ["COPY", "stickers"]


def test_cli_refuses_hostile_hash_files_with_line_numbers(
        bank_redis: redis.Redis[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert _cli(capsys, "create", "B", "--action", "block", "--category", "O1")[0] == 0
    bad = tmp_path / "bad.te"
    bad.write_text(f"pdq {PDQ}\npdq zz\n\x00\x01garbage\nmd5 {MD5}\n")
    code, _, err = _cli(capsys, "import", "B", str(bad), "--format", "te")
    assert code == 1 and "line 2:" in err and "line 3:" in err and "nothing imported" in err
    assert int(bank_redis.hlen("llavaguard:bank:B:entries")) == 0
    code, out, _ = _cli(capsys, "import", "B", str(bad), "--format", "te", "--skip-invalid")
    assert code == 0 and json.loads(out) | {} == {"bank": "B", "read": 2, "new": 2, "invalid": 2, "entries": 2}

    binary = tmp_path / "binary"
    binary.write_bytes(b"pdq \xff\xfe\x00" * 10)
    code, _, err = _cli(capsys, "import", "B", str(binary), "--format", "te")
    assert code == 1 and "not UTF-8" in err
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"hash_type": "md5", "hash": f"{i:032x}"}) + "\n" for i in range(4)))
    code, _, err = _cli(capsys, "import", "B", str(many), "--format", "jsonl")
    assert code == 1 and "more than 5 entries" in err, "the bank's bound (LLAVAGUARD_BANK_MAX_ENTRIES)"
    monkeypatch.setattr(banks_command, "MAX_FILE_BYTES", 100)
    big = tmp_path / "big.te"
    big.write_text(f"pdq {PDQ}\n" * 10)
    code, _, err = _cli(capsys, "import", "B", str(big), "--format", "te")
    assert code == 1 and "larger than 100 bytes" in err
    code, _, err = _cli(capsys, "import", "B", str(tmp_path / "missing"), "--format", "te")
    assert code == 1 and "cannot read" in err
    code, _, err = _cli(capsys, "import", "NOPE", str(big), "--format", "te")
    assert code == 1 and "no bank 'NOPE'" in err
    code, _, err = _cli(capsys, "create", "bad name!", "--action", "allow")
    assert code == 1 and "bank name" in err


def test_a_match_is_the_banks_answer_and_is_counted_by_action(bank_redis: redis.Redis[bytes]) -> None:
    from worker.intake.images import PreparedImage
    from worker.models import ImageInfo, ModerationRequest
    from worker.observability.metrics import BANK_MATCHES

    store = BankStore(bank_redis, max_entries=10)
    store.create(make_config("STICKERS", "allow", None, None))
    store.add("STICKERS", [Entry("pdq", PDQ, "st-1")])
    matcher = BankMatcher(store, refresh_s=0)
    counter = BANK_MATCHES.labels(action="allow", hash_type="pdq")
    before = counter._value.get()
    request = ModerationRequest.model_validate({"id": "m1", "image": {"url": "https://example.org/a.png"}})
    image = PreparedImage(b"", "image/jpeg", ImageInfo(sha256=SHA, pdq=_flip(PDQ, 2), pdq_quality=90), md5=MD5)
    outcome = matcher.match(request, image, "prompt-hash", "model")
    assert outcome is not None and outcome.match.model_dump(exclude_none=True) == {
        "kind": "bank", "bank": "STICKERS", "entry": "st-1", "distance": 2}
    assert (outcome.rating, outcome.category, outcome.decision, outcome.score) == (
        "Safe", "NA: None applying", "allow", None)
    assert outcome.rationale is not None and "'STICKERS'" in outcome.rationale
    assert counter._value.get() == before + 1


def test_a_slow_reload_does_not_hold_up_other_lookups(bank_redis: redis.Redis[bytes]) -> None:
    import threading
    import time

    gate = threading.Event()
    gate.set()

    class SlowStore(BankStore):
        def entries(self, name: str) -> Iterator[Entry]:
            assert gate.wait(10)
            yield from super().entries(name)

    store = SlowStore(bank_redis, max_entries=10)
    store.create(make_config("B", "block", "O1", None))
    store.add("B", [Entry("md5", MD5)])
    matcher = BankMatcher(store, refresh_s=0)
    assert matcher.lookup(None, MD5, None, None) is not None
    gate.clear()
    store.add("B", [Entry("sha256", SHA)])
    reloading = threading.Thread(target=matcher.lookup, args=(None, None, None, None))
    reloading.start()
    time.sleep(0.2)  # the thread is now inside the reload, waiting on the gate
    started = time.monotonic()
    assert matcher.lookup(SHA, MD5, None, None).hash_type == "md5"  # type: ignore[union-attr]
    assert time.monotonic() - started < 1, "answered from the copy it had"
    gate.set()
    reloading.join(10)
    assert matcher.lookup(SHA, None, None, None) is not None


def test_the_command_reads_stdin_and_exits_non_zero_on_a_bad_file(
        bank_redis: redis.Redis[bytes], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import os
    import subprocess
    import sys

    BankStore(bank_redis, 10).create(make_config("B", "block", "O3", None))
    bad = subprocess.run([sys.executable, "-m", "producers.cli", "banks", "import", "B", "-", "--format", "te"],
                         input=f"pdq {PDQ}\nmd5 xyz\n", text=True, capture_output=True, env=dict(os.environ),
                         timeout=60, check=False)
    assert bad.returncode == 1 and "-: line 2:" in bad.stderr and "nothing imported" in bad.stderr
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(f"pdq {PDQ}\n".encode())))
    code, out, _ = _cli(capsys, "import", "B", "-", "--format", "te")
    assert code == 0 and json.loads(out)["new"] == 1
    assert _cli(capsys, "export", "B", "--format", "te")[1] == f"pdq {PDQ}\n"
