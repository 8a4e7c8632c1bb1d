"""Reading the two generation requests the stand-in serves into `Job`s.

`/v1/chat/completions` carries one user message with an image part and a text part; `/generate` carries
already-templated text plus `image_data`, one item or a batch. Anything the stand-in cannot answer is a
`BadRequest` with a message saying what was wrong.
"""

from __future__ import annotations

import json
from typing import Any

from worker.standin.regex_answers import read_regex
from worker.standin.verdicts import DEFAULT_ORDER
from worker.standin.wire import BadRequest, Job, schema_order

NATIVE_DEFAULT_MAX_NEW_TOKENS = 128  # SGLang's default for /generate


def chat_job(body: Any) -> Job:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise BadRequest("'messages' must be a non-empty list")
    texts: list[str] = []
    images: list[str] = []
    for message in body["messages"]:
        _read_message(message, texts, images)
    if len(images) != 1:
        raise BadRequest(f"the stand-in answers exactly one image per request, got {len(images)}")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    order = _response_format(body.get("response_format"))
    regex = read_regex(body.get("regex"), other_constraint=order is not None)
    return Job("\n".join(texts), images[0], _token_limit(limit), order, regex)


def _read_message(message: Any, texts: list[str], images: list[str]) -> None:
    if not isinstance(message, dict) or "content" not in message:
        raise BadRequest("each message needs a 'role' and a 'content'")
    content = message["content"]
    if isinstance(content, str):
        texts.append(content)
        return
    if not isinstance(content, list):
        raise BadRequest("'content' must be a string or a list of parts")
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            url = part["image_url"].get("url")
            if not isinstance(url, str):
                raise BadRequest("image_url.url must be a string")
            images.append(url)
        else:
            raise BadRequest(f"unsupported content part: {str(part)[:80]}")


def _response_format(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return DEFAULT_ORDER
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        return schema_order(value["json_schema"].get("schema"))
    raise BadRequest(f"unsupported response_format: {str(value)[:80]}")


def _token_limit(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("max_tokens must be a positive integer")
    return value


def generate_jobs(body: Any) -> tuple[list[Job], bool]:
    """The jobs of a native request and whether it was a batch (a list answer) or a single one."""
    if not isinstance(body, dict) or not isinstance(body.get("text"), str | list):
        raise BadRequest("'text' must be a string or a list of strings")
    batch = isinstance(body["text"], list)
    texts: list[Any] = body["text"] if batch else [body["text"]]
    images = _per_item(body.get("image_data"), len(texts), batch, "image_data")
    params = _per_item(body.get("sampling_params") or {}, len(texts), batch, "sampling_params")
    items = zip(texts, images, params, strict=True)
    return [_native_job(text, image, param) for text, image, param in items], batch


def _per_item(value: Any, count: int, batch: bool, name: str) -> list[Any]:
    if not batch:
        return [value]
    if isinstance(value, dict) and name == "sampling_params":
        return [value] * count
    if not isinstance(value, list) or len(value) != count:
        raise BadRequest(f"'{name}' must be a list as long as 'text' ({count})")
    return value


def _native_job(text: Any, image: Any, params: Any) -> Job:
    if isinstance(image, list) and len(image) == 1:
        image = image[0]
    if not isinstance(text, str) or not isinstance(image, str):
        raise BadRequest("each item needs one text string and exactly one image")
    if not isinstance(params, dict):
        raise BadRequest("'sampling_params' must be an object")
    limit = _token_limit(params.get("max_new_tokens", NATIVE_DEFAULT_MAX_NEW_TOKENS))
    schema = params.get("json_schema")
    regex = read_regex(params.get("regex"), other_constraint=schema is not None)
    if schema is None:
        return Job(text, image, limit, None, regex)
    try:
        return Job(text, image, limit, schema_order(json.loads(schema)))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"sampling_params.json_schema must be a JSON string: {exc}") from exc
