"""How a local file reaches workers on other machines, without its bytes ever going through Redis.

Two ways, chosen on the command line:

- `SharedRoot`: the file already lies on a mount every worker can read (`LLAVAGUARD_SHARED_ROOT`, the same
  absolute path on every machine); the task carries `file:///shared/...` and the worker reads it there.
- `S3Upload`: the file is uploaded to `s3://bucket/prefix/<path relative to the source>` and the task
  carries that URI; workers read it through their S3 client.

`reference` is pure (no I/O), so an audit derives the moderation id of a file, and skips it when it is
already judged, before uploading anything; `place` does the I/O, only for what is about to be published.
"""

from __future__ import annotations

import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from producers.bulk.sources import AuditItem
from worker.intake.file_fetch import file_uri

UPLOAD_THREADS = 8


class Placement(Protocol):
    def reference(self, item: AuditItem) -> str:
        """The URI workers will read `item` from; ValueError if it cannot be placed this way."""
        ...

    def place(self, items: list[AuditItem]) -> dict[str, str]:
        """Make `items` readable at their references; {image: reason} for those that could not be."""
        ...


@dataclass(frozen=True)
class SharedRoot:
    root: Path

    def reference(self, item: AuditItem) -> str:
        path = Path(item.image)
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        if os.path.commonpath([root, real]) != root:
            raise ValueError(f"{path} is not under LLAVAGUARD_SHARED_ROOT ({self.root})")
        return file_uri(path.absolute())

    def place(self, items: list[AuditItem]) -> dict[str, str]:
        return {}  # already there: workers read the shared mount


@dataclass(frozen=True)
class S3Upload:
    bucket: str
    prefix: str
    client: Any

    def reference(self, item: AuditItem) -> str:
        base = item.base or Path(item.image).parent
        relative = posixpath.normpath(Path(item.image).relative_to(base).as_posix())
        if relative == ".." or relative.startswith("../"):
            raise ValueError(f"{item.image} is outside {base}")
        return f"s3://{self.bucket}/{self.key(relative)}"

    def key(self, relative: str) -> str:
        return f"{self.prefix.strip('/')}/{relative}" if self.prefix.strip("/") else relative

    def place(self, items: list[AuditItem]) -> dict[str, str]:
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            results = list(pool.map(self._upload, items))
        return {item.image: error for item, error in zip(items, results, strict=True) if error}

    def _upload(self, item: AuditItem) -> str | None:
        uri = self.reference(item)
        try:
            self.client.upload_file(item.image, self.bucket, uri[len(f"s3://{self.bucket}/"):])
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"
        except Exception as exc:  # noqa: BLE001 (botocore's many error types: the item is reported, not fatal)
            return f"upload failed: {exc}"
        return None


def parse_s3_prefix(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; ValueError otherwise."""
    if not uri.lower().startswith("s3://"):
        raise ValueError(f"expected s3://bucket/prefix, got {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"expected s3://bucket/prefix, got {uri!r}")
    return bucket, prefix
