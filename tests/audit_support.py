"""Helpers for audit tests: datasets of tiny images with known verdicts, and the CLI as a child process."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from worker.standin.palette import PALETTE, make_image

CODES = sorted(PALETTE)
_TINY = {code: make_image(code, size=(16, 16)) for code in CODES}


def write_dataset(folder: Path, count: int, *, start: int = 0, nested: bool = True) -> dict[str, str]:
    """`count` 16x16 PNGs whose stand-in category is known; {path relative to folder: code}."""
    written = {}
    for n in range(start, start + count):
        code = CODES[n % len(CODES)]
        relative = f"part{n % 3}/img{n:05d}.png" if nested else f"img{n:05d}.png"
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_TINY[code])
        written[relative] = code
    return written


def cli(env: dict[str, str], *args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producers.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def audit_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    """`llavaguard audit ... --json`, which must succeed; its summary."""
    done = cli(env, "audit", *args, "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary


def cli_in_terminal(env: dict[str, str], *args: str, timeout_s: float = 240) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal (as in a shell); (exit code, everything shown)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "producers.cli", *args], env=env, stdout=follower,
                            stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code = proc.wait(timeout_s)
    reader.join(10)
    os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")
