"""`llavaguard worker` whose verdicts carry a `decision`, for review tests on a branch without the decision step.

The decision step (worker/decisions, issue 11 item 2) is another branch's; until it is merged, this worker
sets `decision` as that step would with a review band around every Unsafe answer (Unsafe -> `review`, Safe
-> `allow`), just before the review step, in the seam order of worker/pipeline.py. Everything else is the
real worker: run as `python -m tests.decided_worker worker ...` (prefork children inherit the patch).
"""

from __future__ import annotations

import sys

from producers.cli import main
from worker import composition
from worker.models import Verdict
from worker.pipeline import Moderator, RetainStep
from worker.settings import Settings

_build = composition.build_moderator


def decided(step: RetainStep) -> RetainStep:
    def decide_then_retain(verdict: Verdict, payload: bytes, mime: str) -> Verdict:
        if verdict.status == "completed" and verdict.decision is None:
            verdict = verdict.model_copy(update={"decision": "review" if verdict.is_unsafe else "allow"})
        return step(verdict, payload, mime)
    return decide_then_retain


def build_moderator(settings: Settings) -> Moderator:
    moderator = _build(settings)
    moderator.retain = decided(moderator.retain)
    return moderator


composition.build_moderator = build_moderator

if __name__ == "__main__":
    sys.exit(main())
