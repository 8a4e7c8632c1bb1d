"""The audit's compact batch: what the producer writes is what the worker expands, and a message can only
name an audit record for the worker to clear."""

from __future__ import annotations

import base64
import json

from producers.bulk.queued import AuditQueue, Item
from worker.batch_format import expand, marker_of
from worker.models import ModerationRequest
from worker.queues import AUDIT_QUEUED_KEY


class Recorder:
    """Stands in for the redis client's pipeline only to capture the bytes `flush` writes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def pipeline(self, transaction: bool) -> Recorder:
        assert transaction, "record and message are written in one MULTI"
        return self

    def hset(self, *args: object) -> None:
        self.calls.append(("hset", args))

    def lpush(self, *args: object) -> None:
        self.calls.append(("lpush", args))

    def execute(self) -> None:
        pass


def test_the_compact_batch_expands_to_the_requests_it_stands_for() -> None:
    recorder = Recorder()
    queue = AuditQueue(recorder, "cats")  # type: ignore[arg-type]
    ids = ["a" * 32, "b" * 32]
    queue.publish({"policy": "llavaguard-v1.2", "audit": "cats", "non_violating": ["O6"]},
                  [Item(ids[0], "s3://bucket/set/part0/1.png", {}), Item(ids[1], "s3://bucket/set/part1/2.png",
                                                                         {"row": 2})])
    queue.flush()
    (hset, (key, field, packed)), (lpush, (list_name, raw)) = recorder.calls
    assert (hset, lpush, key, list_name) == ("hset", "lpush", AUDIT_QUEUED_KEY + "cats", "bulk")
    assert packed == bytes.fromhex("".join(ids)), "16 bytes per id"
    envelope = json.loads(raw)  # type: ignore[arg-type]
    assert envelope["headers"]["task"] == "llavaguard.moderate_batch"
    [batch], kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
    assert batch["prefix"] == "s3://bucket/set/" and kwargs == {}
    payloads, marker = expand(batch)
    assert marker == (AUDIT_QUEUED_KEY + "cats", field)
    requests = [ModerationRequest.model_validate(p) for p in payloads]
    assert [(r.id, r.image.url, r.metadata, r.audit, r.non_violating) for r in requests] == [
        (ids[0], "s3://bucket/set/part0/1.png", {}, "cats", ["O6"]),
        (ids[1], "s3://bucket/set/part1/2.png", {"row": 2}, "cats", ["O6"])]


def test_only_audit_records_can_be_named_and_other_messages_pass_through() -> None:
    assert marker_of(["llavaguard:id-secret", "x"]) is None
    assert marker_of([AUDIT_QUEUED_KEY + "a", 3]) is None
    assert marker_of([AUDIT_QUEUED_KEY + "a", "f"]) == (AUDIT_QUEUED_KEY + "a", "f")
    plain = [{"id": "x", "image": {"url": "https://e.com/1.png"}}]
    assert expand(plain) == (plain, None)
    payloads, marker = expand({"items": [["x", "1.png"], "junk"], "prefix": 5, "queued": ["other", "f"]})
    assert payloads == [{"id": "x", "image": {"url": "1.png"}}, "junk"] and marker is None
