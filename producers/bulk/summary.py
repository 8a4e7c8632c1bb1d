"""What an audit found: counts of verdicts by rating, category and error, and what the run itself did."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from producers.bulk.diagnosis import FailureSample, configuration_problem
from producers.bulk.sources import Rejected
from worker.models import Verdict

SHOWN_REJECTIONS = 20


@dataclass
class Tally:
    """Counts over the verdicts of an audit's images, whichever run judged them."""

    completed: int = 0
    failed: int = 0
    ratings: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failures: FailureSample = field(default_factory=FailureSample)

    def add(self, verdict: Verdict) -> None:
        if verdict.status == "completed":
            self.completed += 1
            self.ratings[verdict.rating or "?"] += 1
            self.categories[verdict.category or "?"] += 1
        else:
            self.failed += 1
            self.errors[verdict.error.code if verdict.error else "?"] += 1
            self.failures.add(verdict)

    @property
    def judged(self) -> int:
        return self.completed + self.failed


@dataclass
class AuditSummary:
    source: str
    policy: str
    non_violating: list[str]
    images: int = 0
    """Distinct images the source names (rejected entries not included)."""
    judged_before: int = 0
    """Had a verdict before this run started: not enqueued again."""
    resumed: int = 0
    """Were already enqueued by an earlier run and still waiting: not enqueued again."""
    enqueued: int = 0
    republished: int = 0
    """Of those resumed: marked enqueued, but their messages were in no queue (lost), so enqueued again."""
    pending: int = 0
    """Still without a verdict when this run stopped waiting."""
    rejected: list[Rejected] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    name: str = ""
    """The audit's name, recorded on the verdicts it asks for (`Verdict.audit`; `export --audit NAME`)."""
    retried: int = 0
    """Of those enqueued now: images whose latest verdict had failed, judged again under a new id."""

    @property
    def configuration_error(self) -> str | None:
        """Set when every verdict failed because of the workers' configuration (`diagnosis.py`)."""
        return configuration_problem(self.tally.completed, self.tally.failed, self.tally.failures)

    def lines(self) -> list[str]:
        nv = f" (non-violating: {', '.join(self.non_violating)})" if self.non_violating else ""
        out = [
            f"audit {self.name} of {self.source} under policy {self.policy}{nv}",
            f"  images: {self.images}; judged before this run: {self.judged_before}; "
            f"resumed from an earlier run: {self.resumed}; enqueued now: {self.enqueued}"
            + (f"; re-enqueued (lost messages): {self.republished}" if self.republished else "")
            + (f"; failed verdicts judged again: {self.retried}" if self.retried else ""),
            f"  verdicts: {self.tally.judged} ({self.tally.completed} completed, {self.tally.failed} failed); "
            f"pending: {self.pending}; rejected entries: {len(self.rejected)}",
        ]
        out += _section("rating", self.tally.ratings) + _section("category", self.tally.categories)
        out += _section("failed with", self.tally.errors)
        for rejection in self.rejected[:SHOWN_REJECTIONS]:
            out.append(f"  rejected {rejection.where}: {rejection.reason}")
        if len(self.rejected) > SHOWN_REJECTIONS:
            out.append(f"  ... and {len(self.rejected) - SHOWN_REJECTIONS} more rejected entries")
        return out

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("rejected", "tally")}
        data["rejected"] = [asdict(r) for r in self.rejected]
        data["configuration_error"] = self.configuration_error
        data["tally"] = {"completed": self.tally.completed, "failed": self.tally.failed,
                         "ratings": dict(self.tally.ratings), "categories": dict(self.tally.categories),
                         "errors": dict(self.tally.errors)}
        return data


def _section(title: str, counts: Counter[str]) -> list[str]:
    if not counts:
        return []
    width = max(len(name) for name in counts)
    return [f"  {title}:"] + [f"    {name:<{width}}  {n}" for name, n in sorted(counts.items())]
