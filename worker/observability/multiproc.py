"""The host's shared directory of prometheus_client's multiprocess mode. Imports nothing from prometheus_client.

prometheus_client chooses between in-memory and mmap-file values when it is first imported, so
`prepare_multiprocess()` must run before that import; this module exists so that it can.
See `worker.observability.exporter` for why every pool uses multiprocess mode.

Why one directory per host (per user and metrics port), not one per worker: several `llavaguard worker`
processes on one host compete for one metrics port, and whichever holds it serves the sum over every file in
the directory, so the counts of a worker that does not hold the port (or that died) are never lost. Files
are per process id already (`counter_<pid>.db`), so workers never write into each other's files.

Who may delete what: every worker holds a shared `flock` on `<dir>/.lock` while it runs. Only a worker that
can take the lock exclusively (no other worker uses the directory) clears the files: at start (leftovers of
workers that were all killed: counters then restart from zero, like any restarted exporter) and at exit
(the last one out). Never delete the directory or its lock file: another worker may be opening them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_NAME = ".lock"


def shared_metrics_dir(port: int, configured: Path | None = None) -> Path:
    """`LLAVAGUARD_METRICS_DIR` if set, else `<temp dir>/llavaguard-metrics-<uid>-<port>`.

    Keyed by port: exactly the workers that compete for one port are summed together.
    """
    if configured is not None:
        return configured
    return Path(tempfile.gettempdir()) / f"llavaguard-metrics-{os.getuid()}-{port}"


@dataclass
class MetricsDir:
    """The shared directory, held (shared lock) by this worker until `release()`."""

    path: Path
    _lock_fd: int

    def release(self) -> None:
        """Drop this worker's hold; the last worker out clears the files."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        if _try_exclusive(self._lock_fd):
            _clear_files(self.path)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        if os.environ.get(MULTIPROC_ENV) == str(self.path):
            del os.environ[MULTIPROC_ENV]


def prepare_multiprocess(path: Path) -> MetricsDir:
    """Join the shared metrics directory `path` and announce it to prometheus_client through the environment.

    Forked pool children inherit the variable (and the lock) and write their own files into the directory.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before the worker set PROMETHEUS_MULTIPROC_DIR: the metrics of "
            "prefork children would be lost (import worker.observability.metrics only after this call)"
        )
    joined = join_shared_dir(path)
    os.environ[MULTIPROC_ENV] = str(path)
    return joined


def join_shared_dir(path: Path) -> MetricsDir:
    """Hold `path` for this worker; alone there, first clear what killed workers left behind."""
    _make_private_dir(path)
    fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    if _try_exclusive(fd):  # nobody else uses it: whatever is there was left by killed workers
        _clear_files(path)
    fcntl.flock(fd, fcntl.LOCK_SH)  # not atomic with the line above; harmless: we have written nothing yet
    return MetricsDir(path, fd)


def _make_private_dir(path: Path) -> None:
    """Create `path` (mode 0700) or accept it only if it is this user's and no one else can write into it."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise PermissionError(
            f"metrics directory {path} is not a directory owned by this user and writable only by it "
            "(set LLAVAGUARD_METRICS_DIR)"
        )


def _try_exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _clear_files(path: Path) -> None:
    for file in path.glob("*.db"):
        with contextlib.suppress(FileNotFoundError):
            file.unlink()


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (in this pid namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def dead_pids(path: Path) -> set[int]:
    """Processes that left live-gauge files behind but no longer exist (killed without a shutdown hook)."""
    pids = set()
    for file in path.glob("gauge_live*_*.db"):
        with contextlib.suppress(ValueError):
            pids.add(int(file.stem.rsplit("_", 1)[1]))
    return {pid for pid in pids if not process_alive(pid)}


def live_pids(path: Path) -> set[int]:
    """Processes that write into `path` (any value file `<kind>_<pid>.db`) and still exist."""
    pids = set()
    for file in path.glob("*_*.db"):
        with contextlib.suppress(ValueError):
            pids.add(int(file.stem.rsplit("_", 1)[1]))
    return {pid for pid in pids if process_alive(pid)}
