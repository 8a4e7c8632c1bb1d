"""Read an image named by a `file://` URI, and only from inside the shared root (`LLAVAGUARD_SHARED_ROOT`).

Bulk audits of a folder reach workers on other machines through a mount both sides share: the producer sends
`file:///shared/dataset/cat.jpg`, never the bytes. A worker must never become a way to read other files, so
a path is accepted only if, with `..` and every symlink resolved, it lies in the root; it is then opened one
component at a time beneath the root with `O_NOFOLLOW`, so a symlink swapped in after the check is refused
too. Only regular files are read (never a FIFO or a device), and never more than the byte limit.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from worker.errors import ErrorCode, ModerationFailed
from worker.intake.limits import check_byte_size, too_large

SCHEME = "file://"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO must not hang us


def file_uri(path: Path) -> str:
    """The `file://` URI of an absolute path, percent-encoded (`?`, `#` and spaces survive the round trip)."""
    return path.as_uri()


def path_of_file_uri(uri: str) -> str:
    """The absolute path a `file:///...` (or `file://localhost/...`) URI names; REQUEST_INVALID otherwise."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file" or parts.netloc.lower() not in ("", "localhost"):
        raise ModerationFailed(ErrorCode.REQUEST_INVALID, f"a file URI is file:///absolute/path, got {uri[:200]!r}")
    path = unquote(parts.path)
    if not path.startswith("/") or "\x00" in path:
        raise ModerationFailed(ErrorCode.REQUEST_INVALID, f"a file URI names an absolute path, got {uri[:200]!r}")
    return path


class FileFetcher:
    """Reads files beneath `root`; stateless apart from its settings, so one fetcher serves every thread."""

    def __init__(self, root: Path | None, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def close(self) -> None:
        pass

    def fetch(self, uri: str) -> bytes:
        if self.root is None:
            raise ModerationFailed(  # like s3:// without a client: not configured on this worker
                ErrorCode.FETCH_SCHEME_UNSUPPORTED, "file:// images need LLAVAGUARD_SHARED_ROOT set on the worker"
            )
        path = path_of_file_uri(uri)
        try:  # realpath itself fails (EINVAL, ELOOP ...) when a symlink is swapped while it resolves
            root = os.path.realpath(self.root)
            components = self._beneath(root, path)
            fd = _open_beneath(root, components)
        except OSError as exc:
            raise _translate(path, exc) from exc
        try:
            return self._read(fd, path)
        finally:
            os.close(fd)

    def _beneath(self, root: str, path: str) -> list[str]:
        """The components of `path` relative to the root, after resolving `..` and symlinks."""
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise ModerationFailed(
                ErrorCode.FILE_NOT_ALLOWED, f"{path} is outside LLAVAGUARD_SHARED_ROOT ({self.root})"
            )
        return list(Path(real).relative_to(root).parts)

    def _read(self, fd: int, path: str) -> bytes:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModerationFailed(ErrorCode.FILE_NOT_FOUND, f"{path} is not a regular file")
        if info.st_size > self.max_bytes:
            raise too_large(self.max_bytes, f"the file is {info.st_size} bytes")
        chunks, size = [], 0
        while size <= self.max_bytes:
            chunk = os.read(fd, min(1 << 20, self.max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        check_byte_size(data, self.max_bytes)
        return data


def _open_beneath(root: str, components: list[str]) -> int:
    """Open root/components[0]/... without following any symlink on the way; the caller owns the fd."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for index, name in enumerate(components):
        last = index == len(components) - 1
        try:
            child = os.open(name, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            link = _symlink_error(fd, name)
            if link is not None:
                raise link from exc
            raise
        finally:
            os.close(fd)
        fd = child
    return fd


def _symlink_error(dir_fd: int, name: str) -> OSError | None:
    """ELOOP when `name` is a symlink (O_NOFOLLOW|O_DIRECTORY reports one as ENOTDIR)."""
    try:
        is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return None
    return OSError(errno.ELOOP, "a symlink is not followed here", name) if is_link else None


def _translate(path: str, exc: OSError) -> ModerationFailed:
    if exc.errno in (errno.ELOOP, errno.EACCES, errno.EPERM):
        reason = "a symlink changed beneath the root" if exc.errno == errno.ELOOP else "permission denied"
        return ModerationFailed(ErrorCode.FILE_NOT_ALLOWED, f"{path}: {reason}")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ModerationFailed(ErrorCode.FILE_NOT_FOUND, f"{path} does not exist")
    if exc.errno == errno.EINVAL:  # readlink on a path that stopped being a symlink mid-resolution
        return ModerationFailed(ErrorCode.FILE_NOT_ALLOWED, f"{path}: a symlink changed while it was resolved")
    return ModerationFailed(ErrorCode.FILE_NOT_FOUND, f"{path} cannot be read: {exc.strerror}")
