"""The per-worker directory of prometheus_client's multiprocess mode. Imports nothing from prometheus_client.

prometheus_client chooses between in-memory and mmap-file values when it is first imported, so
`prepare_multiprocess()` must run before that import; this module exists so that it can.
See `worker.observability.exporter` for why every pool uses multiprocess mode.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess() -> Path:
    """A fresh metrics directory for this worker, announced to prometheus_client through the environment.

    Forked pool children inherit the variable and write their own files into the same directory.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before the worker set PROMETHEUS_MULTIPROC_DIR: the metrics of "
            "prefork children would be lost (import worker.observability.metrics only after this call)"
        )
    path = Path(tempfile.mkdtemp(prefix="llavaguard-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def cleanup_multiprocess(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == str(path):
        del os.environ[MULTIPROC_ENV]


def _alive(pid: int) -> bool:
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
    return {pid for pid in pids if not _alive(pid)}
