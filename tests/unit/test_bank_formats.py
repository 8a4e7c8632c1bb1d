"""Hash banks without Redis: names, actions and hashes validated; every file format read and written; the
PDQ index finds exactly what a scan finds."""

from __future__ import annotations

import json
import random

import pytest

from worker.banks.entries import BLOCK_PDQ_DISTANCE, Entry, make_config, make_entry
from worker.banks.formats import FORMATS, dump, parse
from worker.banks.index import PdqIndex

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
SHA = "a" * 64
MD5 = "b" * 32


def test_a_block_bank_needs_a_category_and_an_allow_bank_has_none() -> None:
    block = make_config("NCII_BANK", "block", "o4", None)
    assert (block.category, block.pdq_distance) == ("O4: Nudity Content", BLOCK_PDQ_DISTANCE)
    assert make_config("stickers", "allow", None, None).pdq_distance < BLOCK_PDQ_DISTANCE
    for args, message in [
        (("x", "block", None, None), "needs --category"),
        (("x", "allow", "O1", None), "no category"),
        (("x", "block", "NA", None), "O1 ... O9"),
        (("x", "block", "O12", None), "unknown category"),
        (("x", "quarantine", None, None), "action must be"),
        (("x", "block", "O1", 64), "pdq distance"),
        (("bad name", "allow", None, None), "bank name"),
        (("-x", "allow", None, None), "bank name"),
        (("x" * 65, "allow", None, None), "bank name"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_config(*args)  # type: ignore[arg-type]


def test_hashes_are_normalised_and_checked_by_type() -> None:
    assert make_entry("PDQ", PDQ.upper()).value == PDQ
    assert make_entry("video_md5", MD5).hash_type == "md5"  # ThreatExchange's name for a file's MD5
    for kind, value, message in [
        ("pdq", PDQ[:-1], "64 hex"), ("pdq", PDQ[:-1] + "g", "64 hex"), ("md5", SHA, "32 hex"),
        ("url", "https://example.org", "unsupported hash type"), ("sha256", "", "64 hex"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_entry(kind, value)
    with pytest.raises(ValueError, match="entry id"):
        make_entry("pdq", PDQ, "x\x00y")


ENTRIES = [Entry("pdq", PDQ, "te-123"), Entry("sha256", SHA, ""), Entry("md5", MD5, "a,b \"quoted\"")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_what_it_writes(fmt: str) -> None:
    text = "\n".join(dump(ENTRIES, fmt))
    parsed = parse(text, fmt)
    assert parsed.problems == []
    expected = ENTRIES if fmt != "te" else [Entry(e.hash_type, e.value) for e in ENTRIES]  # te has no ids
    assert parsed.entries == expected


def test_the_published_shapes_are_read() -> None:
    te_csv = "signal_type,signal_str,collab,category,tags\npdq," + PDQ + ",Sample Data,POSITIVE_CLASS,\n"
    assert parse(te_csv, "csv").entries == [Entry("pdq", PDQ)]  # `threatexchange dataset -P --csv`
    assert parse(f"pdq {PDQ}\n# a comment\n\nvideo_md5 {MD5}\n", "te").entries == [
        Entry("pdq", PDQ), Entry("md5", MD5)]
    hma = json.dumps({"pdq": PDQ, "md5": MD5}) + "\n" + json.dumps({"id": 7, "signals": {"pdq": PDQ}})
    assert parse(hma, "hma").entries == [Entry("pdq", PDQ), Entry("md5", MD5), Entry("pdq", PDQ, "7")]


def test_bad_lines_are_reported_with_their_numbers() -> None:
    text = "\n".join([
        f"pdq {PDQ}", "pdq nothex", "raw_text hello", "x" * 5000, f"md5 {MD5}", "pdq",
    ])
    parsed = parse(text, "te")
    assert [p.line for p in parsed.problems] == [2, 3, 4, 6]
    assert "64 hex" in str(parsed.problems[0]) and str(parsed.problems[0]).startswith("line 2:")
    assert "longer than" in parsed.problems[2].message
    assert len(parsed.entries) == 2


@pytest.mark.parametrize(("fmt", "text", "message"), [
    ("jsonl", "{not json", "not JSON"),
    ("jsonl", "[1, 2]", "not a JSON object"),
    ("jsonl", "[" * 4000, "nested too deeply"),
    ("hma", "[" * 4000, "nested too deeply"),
    ("jsonl", '{"hash_type": 1, "hash": "x"}', "expected"),
    ("jsonl", json.dumps({"hash_type": "pdq", "hash": PDQ, "id": {"a": 1}}), "id is a string"),
    ("hma", "{}", "expected"),
    ("hma", json.dumps({"pdq": 5}), "not a string"),
    ("csv", f"pdq,{PDQ}", "header"),
    ("csv", "hash_type,hash,id\npdq", "columns"),
])
def test_each_kind_of_bad_line_says_what_is_wrong(fmt: str, text: str, message: str) -> None:
    parsed = parse(text, fmt)
    assert parsed.entries == [] and parsed.problems and message in parsed.problems[0].message


def test_a_csv_without_a_header_is_one_problem_not_one_per_line() -> None:
    parsed = parse("\n".join(f"pdq,{PDQ}" for _ in range(100)), "csv")
    assert len(parsed.problems) == 1 and parsed.problems[0].line == 1


def _flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def test_the_index_finds_exactly_what_a_scan_finds() -> None:
    rng = random.Random(12)
    stored = [rng.getrandbits(256) for _ in range(2000)]
    near = [_flip(stored[i], rng.sample(range(256), rng.randrange(0, 48))) for i in range(0, 2000, 10)]
    index = PdqIndex()
    for i, value in enumerate(stored):
        index.add(f"{value:064x}", str(i))
    for query in near + [rng.getrandbits(256) for _ in range(50)]:
        for max_distance in (0, 15, 31, 47):
            best = min(((query ^ v).bit_count(), i) for i, v in enumerate(stored))
            found = index.nearest(f"{query:064x}", max_distance)
            if best[0] > max_distance:
                assert found is None
            else:
                assert found is not None and found[2] == best[0]
                assert (int(found[0], 16) ^ query).bit_count() == best[0]


def test_the_index_finds_a_hash_whose_flips_are_spread_over_every_segment() -> None:
    """31 flipped bits spread over all 16 segments (one or two in each): the case the probe radius covers."""
    value = random.Random(3).getrandbits(256)
    index = PdqIndex()
    index.add(f"{value:064x}", "e1")
    spread = [segment * 16 + offset for offset in (0, 7) for segment in range(16)][:31]
    found = index.nearest(f"{_flip(value, spread):064x}", 31)
    assert found == (f"{value:064x}", "e1", 31)
    assert index.nearest(f"{_flip(value, spread):064x}", 30) is None
