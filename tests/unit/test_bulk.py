"""Bulk audit parts without services: sources, ids, placement, interrupts, summaries, export paging."""

from __future__ import annotations

import io
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from producers.bulk.placement import S3Upload, SharedRoot, parse_s3_prefix
from producers.bulk.planner import audit_moderation_id, deferred_interrupts
from producers.bulk.sources import AuditItem, FolderSource, ManifestSource, Rejected, count, open_source
from producers.bulk.summary import AuditSummary
from producers.export import CSV_COLUMNS, iter_verdicts, parse_instant, write
from worker.models import ErrorInfo, ImageInfo, PolicyRef, Verdict
from worker.stores import MemoryVerdictStore, VerdictQuery


def test_a_folder_yields_its_images_sorted_recursively_without_following_symlinked_folders(tmp_path: Path) -> None:
    for name in ("b/2.PNG", "a/1.jpg", "0.webp", "notes.txt", "a/deeper/3.gif"):
        (tmp_path / "set" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "set" / name).write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "9.png").write_bytes(b"x")
    (tmp_path / "set" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    items = list(FolderSource(tmp_path / "set"))
    assert [i.metadata["file"] for i in items if isinstance(i, AuditItem)] == [
        "0.webp", "a/1.jpg", "a/deeper/3.gif", "b/2.PNG"]
    assert all(isinstance(i, AuditItem) and i.local and i.base == tmp_path / "set" for i in items)
    assert count(FolderSource(tmp_path / "set")) == 4


def test_manifests_of_each_kind(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("# c\nhttps://x.example/1.png\n\n  s3://b/k.png  \nlocal/2.png\n")
    (tmp_path / "b.jsonl").write_text('{"image": "s3://b/1.png", "metadata": {"a": 1}}\n[1]\n{"image": "x.png", '
                                      '"metadata": 5}\nnot json\n\n')
    (tmp_path / "c.csv").write_text("label,image\ncat,https://x.example/c.png\ndog,\n")
    (tmp_path / "d.csv").write_text("url\nhttps://x.example/c.png\n")
    txt = list(ManifestSource(tmp_path / "a.txt"))
    assert txt[:2] == [AuditItem("https://x.example/1.png"), AuditItem("s3://b/k.png")]
    assert txt[2] == AuditItem(str(tmp_path / "local/2.png"), {"file": "local/2.png"}, local=True, base=tmp_path)
    jsonl = list(ManifestSource(tmp_path / "b.jsonl"))
    assert jsonl[0] == AuditItem("s3://b/1.png", {"a": 1})
    assert [r.where for r in jsonl[1:] if isinstance(r, Rejected)] == [f"{tmp_path / 'b.jsonl'}:{n}" for n in (2, 3, 4)]
    csv_entries = list(ManifestSource(tmp_path / "c.csv"))
    assert csv_entries[0] == AuditItem("https://x.example/c.png", {"label": "cat"})
    assert isinstance(csv_entries[1], Rejected)
    assert [type(e) for e in ManifestSource(tmp_path / "d.csv")] == [Rejected]


def test_open_source_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("x")
    with pytest.raises(ValueError, match="no such folder"):
        open_source(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"\.txt, \.jsonl, \.csv"):
        open_source(str(tmp_path / "m.yaml"))
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        open_source("s3:///prefix", s3_client=object())


def test_audit_ids_are_stable_and_distinguish_policy_declarations_and_images() -> None:
    secret = b"s" * 32
    base = audit_moderation_id(secret, "llavaguard-v1.2", ["O2", "O6"], "file:///d/1.png")
    assert base == audit_moderation_id(secret, "llavaguard-v1.2", ["O6", "O2"], "file:///d/1.png")
    others = {audit_moderation_id(secret, "strict", ["O2", "O6"], "file:///d/1.png"),
              audit_moderation_id(secret, "llavaguard-v1.2", ["O2"], "file:///d/1.png"),
              audit_moderation_id(secret, "llavaguard-v1.2", ["O2", "O6"], "file:///d/2.png"),
              audit_moderation_id(b"t" * 32, "llavaguard-v1.2", ["O2", "O6"], "file:///d/1.png")}
    assert base not in others and len(others) == 4 and len(base) == 32


def test_placement_references(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (tmp_path / "out.png").write_bytes(b"x")
    (root / "d" / "escape.png").symlink_to(tmp_path / "out.png")
    shared = SharedRoot(root)
    expected = "file://" + str(root) + "/d/a%20b.png"
    assert shared.reference(AuditItem(str(root / "d" / "a b.png"), local=True)) == expected
    for outside in (tmp_path / "out.png", root / "d" / "escape.png", root / ".." / "out.png"):
        with pytest.raises(ValueError, match="not under LLAVAGUARD_SHARED_ROOT"):
            shared.reference(AuditItem(str(outside), local=True))
    upload = S3Upload("bkt", "audits/run1/", client=None)
    item = AuditItem(str(tmp_path / "set" / "x" / "1.png"), local=True, base=tmp_path / "set")
    assert upload.reference(item) == "s3://bkt/audits/run1/x/1.png"
    assert S3Upload("bkt", "", client=None).reference(item) == "s3://bkt/x/1.png"
    with pytest.raises(ValueError, match="outside"):
        upload.reference(AuditItem(str(tmp_path / "set" / ".." / "1.png"), local=True, base=tmp_path / "set"))
    assert parse_s3_prefix("s3://bkt/a/b") == ("bkt", "a/b")
    with pytest.raises(ValueError):
        parse_s3_prefix("/local")


def test_ctrl_c_is_held_back_until_publishing_is_done() -> None:
    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def verdict(n: int, at: datetime, *, rating: str = "Unsafe", failed: bool = False) -> Verdict:
    common = {"id": f"v{n:04d}", "policy": PolicyRef(name="p"), "image": ImageInfo(source=f"file:///d/{n}.png"),
              "metadata": {"file": f"{n}.png"}, "created_at": at, "completed_at": at}
    if failed:
        return Verdict(status="failed", error=ErrorInfo(code="file_not_found", message="gone"), **common)
    return Verdict(status="completed", rating=rating, category="O4: Nudity Content", rationale="r",  # type: ignore[arg-type]
                   **common)


def test_export_pages_through_many_verdicts_on_one_instant_exactly_once() -> None:
    store = MemoryVerdictStore()
    instant = datetime(2024, 6, 1, tzinfo=UTC)
    for n in range(25):
        at = instant if n < 12 else instant + timedelta(seconds=n)
        store.save(verdict(n, at, rating="Safe" if n % 5 else "Unsafe"))
    everything = list(iter_verdicts(store, VerdictQuery.build(limit=None), page_size=5))
    assert [v.id for v in everything] == [f"v{n:04d}" for n in range(25)]
    unsafe = list(iter_verdicts(store, VerdictQuery.build(rating="unsafe", limit=None), page_size=2))
    assert [v.id for v in unsafe] == [f"v{n:04d}" for n in range(0, 25, 5)]
    assert len(list(iter_verdicts(store, VerdictQuery.build(limit=7), page_size=3))) == 7
    later = VerdictQuery.build(since=instant + timedelta(seconds=20), limit=None)
    assert [v.id for v in iter_verdicts(store, later, page_size=2)] == [f"v{n:04d}" for n in range(20, 25)]


def test_export_formats() -> None:
    at = datetime(2024, 6, 1, tzinfo=UTC)
    rows = [verdict(1, at), verdict(2, at, failed=True)]
    out = io.StringIO()
    assert write(iter(rows), out, "csv") == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert "file:///d/1.png" in lines[1] and "file_not_found" in lines[2]
    out = io.StringIO()
    write(iter(rows), out, "jsonl")
    assert [json.loads(line)["image"]["source"] for line in out.getvalue().splitlines()] == [
        "file:///d/1.png", "file:///d/2.png"]
    with pytest.raises(ValueError):
        write(iter(rows), io.StringIO(), "xml")


def test_instants_absolute_and_relative() -> None:
    now = datetime(2024, 6, 2, 12, tzinfo=UTC)
    assert parse_instant("24h", now=now) == datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert parse_instant("7d", now=now) == now - timedelta(days=7)
    assert parse_instant("2024-06-01") == datetime(2024, 6, 1, tzinfo=UTC)
    assert parse_instant("2024-06-01T10:00:00Z") == datetime(2024, 6, 1, 10, tzinfo=UTC)
    assert parse_instant("2024-06-01T10:00:00+02:00").utcoffset() == timedelta(hours=2)
    with pytest.raises(ValueError, match="24h"):
        parse_instant("yesterday")


def test_the_summary_reads_well() -> None:
    summary = AuditSummary("ds", "llavaguard-v1.2", ["O6"], images=3, judged_before=1, enqueued=2)
    at = datetime(2024, 6, 1, tzinfo=UTC)
    for v in (verdict(1, at), verdict(2, at, rating="Safe"), verdict(3, at, failed=True)):
        summary.tally.add(v)
    summary.rejected.append(Rejected("m.txt:4", "not a URL"))
    text = "\n".join(summary.lines())
    assert "non-violating: O6" in text and "3 (2 completed, 1 failed)" in text
    assert "file_not_found  1" in text and "rejected m.txt:4: not a URL" in text
    data = summary.as_dict()
    assert data["tally"]["ratings"] == {"Unsafe": 1, "Safe": 1} and data["rejected"][0]["where"] == "m.txt:4"
    json.dumps(data)
