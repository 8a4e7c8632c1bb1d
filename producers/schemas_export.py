"""The wire documents as JSON Schema, generated from the pydantic models (docs/wire-contract.md).

A producer in another language validates against these instead of reading the Python source. The committed
copies under `docs/schemas/` are regenerated with `python -m producers.schemas_export` and a test fails when
they drift from the models; the API serves the same documents at `/v1/schemas/<name>.json`. The request is
described as a producer sends it (validation mode), the verdict as the worker writes it (serialization mode).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from worker.models import ModerationRequest, Verdict

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_PATH = "/v1/schemas"
"""Where the API serves them: `/v1/schemas/moderation-request.json`, `/v1/schemas/verdict.json`."""
DOCUMENTS: dict[str, tuple[type[BaseModel], Literal["validation", "serialization"]]] = {
    "moderation-request": (ModerationRequest, "validation"),
    "verdict": (Verdict, "serialization"),
}
DEFAULT_DIR = Path("docs/schemas")


def schema_of(name: str) -> dict[str, Any]:
    """The JSON Schema of one wire document (KeyError for an unknown name)."""
    model, mode = DOCUMENTS[name]
    return {"$schema": DRAFT, "$id": f"{SCHEMA_PATH}/{name}.json", **model.model_json_schema(mode=mode)}


def rendered(name: str) -> str:
    """The committed file's exact text: stable key order, two-space indent, a final newline."""
    return json.dumps(schema_of(name), indent=2, ensure_ascii=False) + "\n"


def file_name(name: str) -> str:
    return f"{name}.schema.json"


def stale(folder: Path) -> list[str]:
    """The documents whose file in `folder` is missing or differs from the models."""
    return [n for n in DOCUMENTS if not (folder / file_name(n)).is_file()
            or (folder / file_name(n)).read_text(encoding="utf-8") != rendered(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producers.schemas_export", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder to write (default: docs/schemas)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale(args.out)
        for name in outdated:
            print(f"{args.out / file_name(name)} is out of date: run python -m producers.schemas_export",
                  file=sys.stderr)
        return 1 if outdated else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in DOCUMENTS:
        (args.out / file_name(name)).write_text(rendered(name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
