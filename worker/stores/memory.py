"""An in-process verdict store: the test double beside the real ones, held to the same contract.

It keeps each verdict as its JSON text, like the real stores, so a caller never shares (or mutates) the stored
object and round-trips behave exactly as they do against a database. Never use it for real work: it forgets
everything when the process ends and other processes cannot see it.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterable

from worker.models import Decision, ReviewInfo, Verdict
from worker.stores.base import VerdictQuery, reviewed, unique_ids


class MemoryVerdictStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[str, str] = {}

    def save(self, verdict: Verdict) -> bool:
        body = verdict.model_dump_json()
        with self._lock:
            if verdict.id in self._bodies:
                return False
            self._bodies[verdict.id] = body
            return True

    def get(self, id: str) -> Verdict | None:
        with self._lock:
            body = self._bodies.get(id)
        return None if body is None else Verdict.model_validate_json(body)

    def get_many(self, ids: Iterable[str]) -> dict[str, Verdict]:
        wanted = unique_ids(ids)
        with self._lock:
            bodies = {id: self._bodies[id] for id in wanted if id in self._bodies}
        return {id: Verdict.model_validate_json(body) for id, body in bodies.items()}

    def list(self, query: VerdictQuery) -> builtins.list[Verdict]:
        with self._lock:
            bodies = builtins.list(self._bodies.values())
        return query.apply(Verdict.model_validate_json(body) for body in bodies)

    def count(self) -> int:
        with self._lock:
            return len(self._bodies)

    def record_review(self, id: str, review: ReviewInfo, decision: Decision) -> Verdict | None:
        with self._lock:
            body = self._bodies.get(id)
            if body is None:
                return None
            verdict = reviewed(Verdict.model_validate_json(body), review, decision)
            self._bodies[id] = verdict.model_dump_json()
        return verdict

    def close(self) -> None:
        """Nothing to release."""
