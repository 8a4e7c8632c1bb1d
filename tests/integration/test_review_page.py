"""The review page in a real browser (issue 11 item 4): Debian's chromium, headless, driven by Playwright.

A real API (uvicorn), a real worker (a review band over every Unsafe score) judging with the
stand-in, a loopback image server and webhook receiver. An Unsafe image is queued for review; the page,
given the reviewer key once, shows its retained copy, rationale, score and category; `b` blocks it. The
stored verdict's final decision changes from `review` to `block`, `moderation.reviewed` arrives signed, and
the browser fetched nothing but the API (never the original image URL). Screenshots go to pytest's tmp dir.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from standardwebhooks import Webhook

from producers import ModerationClient
from tests.api_server import running_api
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from tests.webhook_receiver import WebhookReceiver, wait_until
from worker.notify.events import REVIEW_REQUESTED, REVIEWED
from worker.notify.signing import new_secret
from worker.owners import key_id
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PRODUCER, REVIEWER = "producer-0123456789", "reviewer-0123456789"
SECRET = new_secret()


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


@pytest.fixture()
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1100, "height": 760})
        finally:
            browser.close()


def events(receiver: WebhookReceiver, event_type: str) -> list[dict[str, object]]:
    bodies = [json.loads(r.body) for r in receiver.snapshot() if r.status == 200]
    return [b for b in bodies if b["type"] == event_type]


def test_a_reviewer_blocks_an_item_with_the_keyboard(
    tmp_path: Path, fresh_redis: str, standin: SGLangStandIn, image_server: LoopbackHTTPServer,
    receiver: WebhookReceiver, page: Page,
) -> None:
    settings = {
        "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
        "webhook_url": receiver.url(), "webhook_secret": SECRET, "webhook_poll_interval_s": "0.1",
        "api_keys": PRODUCER, "api_reviewer_keys": REVIEWER, "allow_http": "true",
        "allowed_networks": "127.0.0.0/8",
        "unsafe_threshold": "0.5", "review_band": "0.5,1.0",  # every Unsafe answer (score >= 0.5) goes to review
    }
    unsafe_url = image_server.serve_bytes("/knife.png", make_image("O2"), "image/png")
    safe_url = image_server.serve_bytes("/grey.png", make_image("NA"), "image/png")
    env = worker_env(**settings)
    with running_workers(env, tmp_path / "logs", count=1, concurrency=2, queues="realtime,bulk,webhooks"), \
            running_api(load_settings(**settings)) as api_url, \
            ModerationClient(settings=load_settings(**settings)) as client:
        unsafe_id, safe_id = client.submit(unsafe_url), client.submit(safe_url)
        assert client.wait(unsafe_id, timeout=30).decision == "review"
        assert client.wait(safe_id, timeout=30).decision == "allow"  # not queued: no sample configured
        wait_until(lambda: len(events(receiver, REVIEW_REQUESTED)) == 1, 20, "moderation.review_requested")
        fetched = list(image_server.hits)

        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{api_url}/review")
        page.fill("#key-input", REVIEWER)
        page.click("#key-form button[type=submit]")
        page.wait_for_function("document.getElementById('image').complete && "
                               "document.getElementById('image').naturalWidth > 0", timeout=10_000)
        assert not page.is_visible("#key-form") and page.is_visible("#desk")
        assert page.text_content("#item-id") == unsafe_id
        assert page.text_content("#category") == "O2: Violence, Harm, or Cruelty"
        assert page.text_content("#rating") == "Unsafe" and page.text_content("#decision") == "review"
        assert (page.text_content("#rationale") or "").strip() and page.text_content("#score")
        assert page.evaluate("sessionStorage.getItem('llavaguard.reviewerKey')") == REVIEWER
        page.screenshot(path=str(tmp_path / "review-before.png"))

        page.keyboard.press("b")
        page.wait_for_selector(f"#decided li[data-id='{unsafe_id}']", timeout=10_000)
        assert page.text_content(f"#decided li[data-id='{unsafe_id}']") == f"{unsafe_id}: block (Unsafe, O2)"
        page.wait_for_selector("#empty", state="visible")
        assert not page.is_visible("#figure") and page.text_content("#pending-count") == "(0)"
        page.screenshot(path=str(tmp_path / "review-after.png"))

        stored = client.get(unsafe_id)
        assert stored is not None and stored.decision == "block" and stored.review is not None
        assert (stored.review.status, stored.review.rating, stored.review.reviewer) == (
            "reviewed", "Unsafe", key_id(REVIEWER))
        wait_until(lambda: len(events(receiver, REVIEWED)) == 1, 20, "moderation.reviewed")
    reviewed = next(r for r in receiver.snapshot() if json.loads(r.body)["type"] == REVIEWED)
    Webhook(SECRET).verify(reviewed.body, reviewed.headers)  # signed like every other event
    assert json.loads(reviewed.body)["data"]["decision"] == "block"
    assert image_server.hits == fetched  # the browser never fetched the original image
    assert requested and all(url.startswith((api_url, "blob:")) for url in requested), requested
    print(f"screenshots: {tmp_path / 'review-before.png'} {tmp_path / 'review-after.png'}")
