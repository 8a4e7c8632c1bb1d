"""Hash files in and out: our CSV / JSON lines, HMA's signal objects and ThreatExchange's signal files.

    csv    header `hash_type,hash[,id]` (ThreatExchange's `threatexchange dataset -P --csv` header
           `signal_type,signal_str,...` is read too; its other columns are ignored)
    jsonl  one `{"hash_type": ..., "hash": ..., "id": ...}` per line
    hma    one HMA signals object per line: `{"pdq": "<hex>", "md5": ...}` (the body of HMA's
           `POST /c/bank/<name>/signal`) or `{"id": ..., "signals": {...}}` (its bank content with signals)
    te     ThreatExchange signal file lines `<signal type> <signal>`, e.g. `pdq 3f00...` (the local file
           exchange's format, and what `threatexchange dataset -P -S` prints)

Hash files are outside data: the caller bounds their size; every bad line is reported with its number, and
nothing here raises on content (only on the caller's own mistakes, e.g. an unknown format name).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from worker.banks.entries import Entry, make_entry

FORMATS = ("csv", "jsonl", "hma", "te")
MAX_LINE_CHARS = 4096
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Parsed:
    entries: list[Entry]
    problems: list[Problem]
    """Every bad line (the CLI prints the first MAX_REPORTED_PROBLEMS)."""


def parse(text: str, fmt: str) -> Parsed:
    """Every line of `text` (already size-bounded) as entries or a problem; blank lines and `#` comments skip."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    parsed = Parsed([], [])
    header: list[str] | None = None
    for number, line in _numbered(text):
        try:
            if len(line) > MAX_LINE_CHARS:
                raise ValueError(f"longer than {MAX_LINE_CHARS} characters")
            if fmt != "csv":
                parsed.entries.extend(_row(line, fmt))
            elif header is None:
                header = _csv_header(line)
            else:
                parsed.entries.append(_csv_entry(header, line))
        except _NoHeader as exc:
            parsed.problems.append(Problem(number, str(exc)))
            break
        except ValueError as exc:
            parsed.problems.append(Problem(number, str(exc)))
    return parsed


def _numbered(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped


def _row(line: str, fmt: str) -> list[Entry]:
    if len(line) > MAX_LINE_CHARS:
        raise ValueError(f"longer than {MAX_LINE_CHARS} characters")
    if fmt == "te":
        kind, _, signal = line.partition(" ")
        return [make_entry(kind, signal)]
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    except RecursionError:  # `[[[[...` within the line limit: Python's decoder recurses per level
        raise ValueError("nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return _hma(data) if fmt == "hma" else [_jsonl(data)]


def _jsonl(data: dict[str, object]) -> Entry:
    hash_type, value, entry_id = data.get("hash_type"), data.get("hash"), data.get("id", "")
    if not isinstance(hash_type, str) or not isinstance(value, str):
        raise ValueError('expected {"hash_type": "<pdq|sha256|md5>", "hash": "<hex>", "id": "<optional>"}')
    return make_entry(hash_type, value, _id(entry_id))


def _hma(data: dict[str, object]) -> list[Entry]:
    signals = data.get("signals", data)
    entry_id = _id(data.get("id", "")) if "signals" in data else ""
    if not isinstance(signals, dict) or not signals:
        raise ValueError('expected {"pdq": "<hex>", ...} or {"id": ..., "signals": {"pdq": "<hex>", ...}}')
    entries = []
    for kind, value in signals.items():
        if not isinstance(value, str):
            raise ValueError(f"signal {str(kind)[:20]!r} is not a string")
        entries.append(make_entry(str(kind), value, entry_id))
    return entries


def _id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("an id is a string or an integer")
    return str(value)


_TYPE_COLUMNS = ("hash_type", "signal_type")
_HASH_COLUMNS = ("hash", "signal_str")


class _NoHeader(ValueError):
    """Without a header no row can be read: one problem, not one per line."""


def _cells(line: str) -> list[str]:
    """One line of CSV (hash files have no quoted newlines)."""
    return next(csv.reader(io.StringIO(line)), [])


def _csv_header(line: str) -> list[str]:
    header = [cell.strip().lower() for cell in _cells(line)]
    if not any(c in header for c in _TYPE_COLUMNS) or not any(c in header for c in _HASH_COLUMNS):
        raise _NoHeader("the first line must be a header naming the columns hash_type,hash[,id]")
    return header


def _csv_entry(header: list[str], line: str) -> Entry:
    cells = _cells(line)
    row = dict(zip(header, cells, strict=False))
    hash_type = next((row[c] for c in _TYPE_COLUMNS if c in row), None)
    value = next((row[c] for c in _HASH_COLUMNS if c in row), None)
    if hash_type is None or value is None:
        raise ValueError(f"expected {len(header)} columns, found {len(cells)}")
    return make_entry(hash_type, value, row.get("id", ""))


def dump(entries: Iterable[Entry], fmt: str) -> Iterator[str]:
    """Lines (without newlines) that `parse(..., fmt)` reads back into the same entries."""
    if fmt == "te":
        yield from (f"{e.hash_type} {e.value}" for e in entries)
    elif fmt == "csv":
        yield "hash_type,hash,id"
        for e in entries:
            out = io.StringIO()
            csv.writer(out, lineterminator="").writerow([e.hash_type, e.value, e.entry_id])
            yield out.getvalue()
    elif fmt == "hma":
        yield from (json.dumps({"id": e.entry_id, "signals": {e.hash_type: e.value}} if e.entry_id
                               else {e.hash_type: e.value}) for e in entries)
    elif fmt == "jsonl":
        yield from (json.dumps({"hash_type": e.hash_type, "hash": e.value, "id": e.entry_id}) for e in entries)
    else:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
