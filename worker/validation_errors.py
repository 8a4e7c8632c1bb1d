"""Pydantic validation errors as the worker, the SDK and the HTTP API report them: where, then what.

One format everywhere (`metadata.post: Input should be ...`), never the submitted input itself (it may be an
image or a secret). A leaf: imports nothing from worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class HasErrors(Protocol):
    """pydantic's ValidationError and FastAPI's RequestValidationError."""

    def errors(self) -> Sequence[Any]: ...


def location(loc: Sequence[Any]) -> str:
    """`("items", 0, "url")` -> `items.0.url`."""
    return ".".join(map(str, loc))


def field_errors(exc: HasErrors) -> list[dict[str, Any]]:
    """Each error's location and message only (no echo of the submitted input)."""
    return [{"loc": [str(part) for part in e["loc"]], "msg": e["msg"]} for e in exc.errors()]


def describe(exc: HasErrors) -> str:
    """Every error on one line: `loc: msg; loc: msg`."""
    return "; ".join(f"{location(e['loc'])}: {e['msg']}" for e in exc.errors())
