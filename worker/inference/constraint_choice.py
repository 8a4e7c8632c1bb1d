"""Which constraint the judge asks for, and stepping down when a server refuses one.

The order is fixed: the training-layout regex (the model's own whitespace and key order), then the JSON
schema, then nothing (the tolerant parser reads free text), keeping only those the backend honours (a verdict
must never record a constraint that a backend silently ignored). `auto` starts at the top, a named setting
starts lower (`json_schema`: never the regex; `none`: nothing). A server that refuses a constraint with a 400
naming it (an SGLang build without that grammar support, an OpenAI-compatible server that does not know the
field) has the constraint dropped for the rest of the process, logged once.

It cannot loop: a refusal only ever removes a constraint, `none` is never removed, and the ladder has three
steps, so one moderation falls back at most twice before an error propagates unchanged.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Literal

from worker.errors import ErrorCode, ModerationFailed
from worker.inference.base import Constraint

log = logging.getLogger(__name__)

ConstraintSetting = Literal["auto", "regex", "json_schema", "none"]
"""`LLAVAGUARD_CONSTRAINT`: where the ladder starts (`auto`: the first the backend advertises)."""
LADDER: tuple[Constraint, ...] = ("regex", "json_schema", "none")
_NAMED_IN_REFUSAL: dict[Constraint, re.Pattern[str]] = {
    "regex": re.compile(r"regex|regular expression|grammar", re.IGNORECASE),
    "json_schema": re.compile(r"json_schema|schema|response_format|grammar", re.IGNORECASE),
}
"""What a server's 400 says when it is the constraint it refuses, not the image or the prompt."""


class ConstraintLadder:
    """The constraint for the next request; shared by every thread of a process (refusals are remembered)."""

    def __init__(self, advertised: frozenset[Constraint], setting: ConstraintSetting = "auto") -> None:
        start = 0 if setting == "auto" else LADDER.index(setting)
        self._steps = tuple(step for step in LADDER[start:] if step in advertised or step == "none")
        if setting != "auto" and self._steps[0] != setting:
            log.warning("constraint %s is not honoured by this backend; using %s", setting, self._steps[0])
        self._refused: set[Constraint] = set()
        self._lock = threading.Lock()

    def current(self) -> Constraint:
        with self._lock:
            return next(step for step in self._steps if step not in self._refused)

    def refuse(self, constraint: Constraint, error: ModerationFailed) -> bool:
        """True when `error` is the server refusing `constraint`: it is dropped, ask again with `current()`."""
        pattern = _NAMED_IN_REFUSAL.get(constraint)
        if pattern is None or error.code is not ErrorCode.INFERENCE_REJECTED or not pattern.search(error.message):
            return False
        with self._lock:
            first = constraint not in self._refused
            self._refused.add(constraint)
        if first:
            log.warning(
                "the model server refused the %s constraint (%s); using %s for the rest of this process",
                constraint, error.message[:300], self.current(),
            )
        return True
