"""docs/wire-contract.md stays true to the code: its names, keys and priority lists are the ones in use."""

from __future__ import annotations

import re
from bisect import bisect
from pathlib import Path

import pytest

from producers.ids import SDK_SCOPE
from worker.broker.guard import REASONS
from worker.notify.events import EVENT_TYPES
from worker.queues import (
    AUDIT_QUEUED_KEY,
    BULK_QUEUE,
    DEADLETTER_KEY,
    ID_SECRET_KEY,
    MODERATE_BATCH_TASK,
    MODERATE_TASK,
    PRIORITY_STEPS,
    REALTIME_QUEUE,
    SUBMISSION_KEY,
    SUBMITTED_KEY,
    SUBMITTED_TTL_S,
    VERDICTS_CHANNEL,
    redis_priority,
)
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "wire-contract.md").read_text(encoding="utf-8")
NODE_PRODUCER = (ROOT / "tests" / "node" / "enqueue.js").read_text(encoding="utf-8")


def kombu_list(queue: str, priority: int | None) -> str:
    """The list kombu's Redis transport pushes to (its `_q_for_pri` with our steps and `:` separator)."""
    broker = redis_priority(priority) or 0
    step = PRIORITY_STEPS[bisect(PRIORITY_STEPS, broker) - 1]
    return f"{queue}:{step}" if step else queue


@pytest.mark.parametrize("constant", [
    MODERATE_TASK, MODERATE_BATCH_TASK, AUDIT_QUEUED_KEY, VERDICTS_CHANNEL, SUBMITTED_KEY, SUBMISSION_KEY,
    ID_SECRET_KEY, DEADLETTER_KEY, REALTIME_QUEUE, BULK_QUEUE,
    f"EX {SUBMITTED_TTL_S}", f'"{SDK_SCOPE}"', *EVENT_TYPES, "webhook-id", "webhook-timestamp", "webhook-signature",
    *REASONS, "/v1/schemas/moderation-request.json", "/v1/schemas/verdict.json", "python -m producers.schemas_export",
])
def test_the_contract_names_what_the_code_uses(constant: str) -> None:
    assert constant in DOC


def test_the_priority_table_is_kombus_placement() -> None:
    rows = re.findall(r"^\| ([0-9, a-z]+) \| ([0-9, ]+) \| `(realtime[:0-9]*)` \|$", DOC, flags=re.MULTILINE)
    assert len(rows) == len(PRIORITY_STEPS)
    covered: list[int | None] = []
    for priorities, brokers, list_name in rows:
        values = [None if p == "none" else int(p) for p in priorities.split(", ")]
        assert [redis_priority(v) or 0 for v in values] == [int(b) for b in brokers.split(", ")]
        assert {kombu_list(REALTIME_QUEUE, v) for v in values} == {list_name}
        covered.extend(values)
    assert sorted(v for v in covered if v is not None) == list(range(10)) and None in covered
    assert f"[{', '.join(map(str, PRIORITY_STEPS))}]" in NODE_PRODUCER


def test_the_node_producer_uses_the_same_constants() -> None:
    for constant in (MODERATE_TASK, SUBMITTED_KEY, SUBMISSION_KEY, ID_SECRET_KEY, str(SUBMITTED_TTL_S)):
        assert constant in NODE_PRODUCER


def test_the_setting_named_for_the_size_limit_exists() -> None:
    assert "LLAVAGUARD_MAX_MESSAGE_BYTES" in DOC and "max_message_bytes" in Settings.model_fields
