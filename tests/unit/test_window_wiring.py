"""The window as the client and the composition root use it: what each answer teaches it, and the settings."""

from __future__ import annotations

import httpx
import pytest

from worker import composition
from worker.errors import InferenceUnavailable, ModerationFailed
from worker.inference.adaptive_window import AdaptiveWindow, FixedWindow
from worker.inference.base import VisionRequest
from worker.inference.sglang_client import SGLangClient
from worker.observability.metrics import INFLIGHT_WINDOW
from worker.settings import load_settings

REQUEST = VisionRequest(image=b"img", mime="image/png", prompt="p", temperature=0.2, top_p=0.95, top_k=50,
                        max_tokens=500)
COMPLETION = {"choices": [{"message": {"content": "hello"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 10, "completion_tokens": 2}}
QUEUE_FULL = {"object": "error", "message": "The request queue is full.", "type": "503", "code": 503}


def client(status: int, payload: object, window: AdaptiveWindow) -> SGLangClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=payload))
    return SGLangClient("http://sglang:30000", transport=transport, inflight_window=window.max_limit, window=window)


def test_a_queue_full_answer_shrinks_the_window_at_once() -> None:
    window = AdaptiveWindow(min_limit=2, max_limit=64)
    with client(503, QUEUE_FULL, window) as sglang, pytest.raises(InferenceUnavailable):
        sglang.complete(REQUEST)
    assert window.limit == 2 and window.in_flight == 0  # 80 % of the one in flight, floored at the minimum


def test_an_answer_is_a_round_trip_and_a_refusal_is_none() -> None:
    window = AdaptiveWindow(min_limit=2, max_limit=64)
    with client(400, {"object": "error", "message": "Error while processing image"}, window) as sglang:
        with pytest.raises(ModerationFailed):
            sglang.complete(REQUEST)
    assert window.min_rtt is None, "a refusal comes back fast: it must not set the base round trip"
    with client(200, COMPLETION, window) as sglang:
        assert sglang.complete(REQUEST).text == "hello"
    assert window.min_rtt is not None and window.limit == 64 and window.in_flight == 0


def test_the_settings_choose_the_window_and_the_gauge_shows_it() -> None:
    adaptive = composition.inflight_window(load_settings(inflight_window=300, inflight_window_min=8))
    assert isinstance(adaptive, AdaptiveWindow) and (adaptive.min_limit, adaptive.limit) == (8, 300)
    assert INFLIGHT_WINDOW._value.get() == 300
    fixed = composition.inflight_window(load_settings(adaptive_window=False, inflight_window=12))
    assert isinstance(fixed, FixedWindow) and fixed.limit == 12
    assert INFLIGHT_WINDOW._value.get() == 12


def test_defaults_cover_sglangs_default_batch() -> None:
    settings = load_settings()
    assert settings.adaptive_window and settings.inflight_window == 512 and settings.inflight_window_min == 4
