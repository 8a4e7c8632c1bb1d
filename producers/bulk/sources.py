"""What an audit reads: the images of a folder, a manifest (`.txt`, `.jsonl`, `.csv`) or an S3 prefix.

A source yields `AuditItem`s (an image reference, or a local file still to be made reachable by workers, see
`placement.py`) and `Rejected` entries for manifest lines it cannot use, in a stable order. Sources are
re-iterable and stream: a million-line manifest or a bucket listing is never held in memory, so an audit
counts its source once (for the progress bar) and then reads it again.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
MANIFEST_SUFFIXES = (".txt", ".jsonl", ".csv")


@dataclass(frozen=True)
class AuditItem:
    """One image: `image` is a URL/URI, or (when `local`) an absolute path on this machine."""

    image: str
    metadata: dict[str, Any] = field(default_factory=dict)
    local: bool = False
    base: Path | None = None
    """For a local file: the folder its key under an upload prefix is relative to."""


@dataclass(frozen=True)
class Rejected:
    where: str
    reason: str


Entry = AuditItem | Rejected


class Source(Protocol):
    def __iter__(self) -> Iterator[Entry]: ...


def count(source: Source) -> int:
    return sum(1 for _ in source)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class FolderSource:
    """Every image file under `root`, recursively, in sorted order; symlinked folders are not followed."""

    root: Path

    def __iter__(self) -> Iterator[Entry]:
        root = self.root.absolute()
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if is_image_name(name):
                    path = Path(folder, name)
                    yield AuditItem(str(path), {"file": path.relative_to(root).as_posix()}, local=True, base=root)


@dataclass(frozen=True)
class ManifestSource:
    """`.txt`: one URL/URI (or path, relative to the manifest) per line, `#` comments; `.jsonl`: objects
    with `image` and optional `metadata`; `.csv`: an `image` column, the other columns become metadata."""

    path: Path

    def __iter__(self) -> Iterator[Entry]:
        suffix = self.path.suffix.lower()
        with self.path.open(newline="" if suffix == ".csv" else None, encoding="utf-8") as file:
            if suffix == ".txt":
                yield from self._text(file)
            elif suffix == ".jsonl":
                yield from self._jsonl(file)
            else:
                yield from self._csv(file)

    def _text(self, lines: Any) -> Iterator[Entry]:
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield self._item(text, {}, number)

    def _jsonl(self, lines: Any) -> Iterator[Entry]:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                yield Rejected(self._where(number), "not a JSON object")
                continue
            yield self._row(row, number)

    def _csv(self, file: Any) -> Iterator[Entry]:
        reader = csv.DictReader(file)
        if reader.fieldnames is None or "image" not in reader.fieldnames:
            yield Rejected(self._where(1), "a CSV manifest needs an 'image' column")
            return
        for row in reader:
            image = (row.pop("image") or "").strip()
            metadata = {k: v for k, v in row.items() if k is not None}
            yield self._item(image, metadata, reader.line_num) if image else Rejected(
                self._where(reader.line_num), "empty 'image'"
            )

    def _row(self, row: Any, number: int) -> Entry:
        if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not row["image"].strip():
            return Rejected(self._where(number), "each line is an object with a non-empty string 'image'")
        metadata = row.get("metadata", {})
        if not isinstance(metadata, dict):
            return Rejected(self._where(number), "'metadata' must be an object")
        return self._item(row["image"].strip(), metadata, number)

    def _item(self, image: str, metadata: dict[str, Any], number: int) -> Entry:
        if "://" in image:
            return AuditItem(image, metadata)
        base = self.path.absolute().parent
        path = base / image
        return AuditItem(str(path), {"file": image, **metadata}, local=True, base=base)

    def _where(self, number: int) -> str:
        return f"{self.path}:{number}"


@dataclass(frozen=True)
class S3PrefixSource:
    """Every image object under `s3://bucket/prefix`, in key order (S3 lists keys sorted)."""

    bucket: str
    prefix: str
    client: Any

    def __iter__(self) -> Iterator[Entry]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if is_image_name(key):
                    yield AuditItem(f"s3://{self.bucket}/{key}")


def open_source(spec: str, s3_client: Any = None) -> Source:
    """The source `spec` names: `s3://bucket/prefix`, a folder, or a manifest file; ValueError otherwise."""
    if spec.lower().startswith("s3://"):
        bucket, _, prefix = spec[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"an S3 source is s3://bucket/prefix, got {spec!r}")
        if s3_client is None:
            raise ValueError("an s3:// source needs an S3 client")
        return S3PrefixSource(bucket, prefix, s3_client)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return ManifestSource(path)
    if path.exists():
        raise ValueError(f"{spec}: a manifest is a {', '.join(MANIFEST_SUFFIXES)} file")
    raise ValueError(f"{spec}: no such folder or manifest")
