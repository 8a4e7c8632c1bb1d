"""The committed JSON Schemas (docs/schemas/) are the models' own, and real documents validate against them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from producers.schemas_export import DOCUMENTS, file_name, main, rendered, stale
from worker.models import ImageInfo, ImageRef, ModerationRequest, PolicyRef, Verdict

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def committed(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((DOCS / file_name(name)).read_text(encoding="utf-8"))
    return loaded


def test_the_committed_schemas_are_what_the_models_generate() -> None:
    assert stale(DOCS) == [], "run: python -m producers.schemas_export"


def test_the_check_fails_on_a_stale_copy_and_the_export_repairs_it(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / file_name("verdict")).write_text(rendered("verdict").replace('"rating"', '"grade"'))
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert main(["--out", str(tmp_path)]) == 0 and stale(tmp_path) == []


def test_a_request_as_producers_send_it_validates_and_id_is_required() -> None:
    schema = committed("moderation-request")
    request = ModerationRequest(id="0f3c", image=ImageRef(data=b"\x89PNG"), priority=9, non_violating=["O6"])
    jsonschema.validate(request.model_dump(mode="json"), schema)
    with pytest.raises(jsonschema.ValidationError, match="'id' is a required property"):
        jsonschema.validate({"image": {"url": "https://example.org/a.png"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"id": "x", "image": {"url": "https://example.org/a.png"}, "priority": 10}, schema)
    for image in ({}, {"url": "https://example.org/a.png", "data": "iVBO"}, {"url": None, "data": None}):
        with pytest.raises(jsonschema.ValidationError):  # exactly one of url and data, as the model says
            jsonschema.validate({"id": "x", "image": image}, schema)
    for image in ({"url": "s3://b/k", "data": None}, {"data": "iVBO"}):
        jsonschema.validate({"id": "x", "image": image}, schema)
        ModerationRequest.model_validate({"id": "x", "image": image})


def test_a_verdict_as_workers_write_it_validates() -> None:
    now = datetime.now(UTC)
    verdict = Verdict(id="0f3c", status="completed", rating="Unsafe", category="O2: Violence, Harm, or Cruelty",
                      policy=PolicyRef(name="llavaguard-v1.2"), image=ImageInfo(), created_at=now, completed_at=now)
    jsonschema.validate(verdict.model_dump(mode="json"), committed("verdict"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**verdict.model_dump(mode="json"), "rating": "Dangerous"}, committed("verdict"))


def test_every_document_has_a_stable_id() -> None:
    assert {committed(n)["$id"] for n in DOCUMENTS} == {
        "/v1/schemas/moderation-request.json", "/v1/schemas/verdict.json"}
