"""The Redis names of the review queue and the retained copies (one prefix, like every other key)."""

from __future__ import annotations

from worker.queues import KEY_PREFIX

REVIEW_KEY = KEY_PREFIX + "reviews:"
PENDING_KEY = REVIEW_KEY + "pending"
"""Sorted set: ids waiting for a reviewer, scored by when they were queued (unix seconds)."""
REVIEWED_KEY = REVIEW_KEY + "reviewed"
"""Sorted set: labelled ids scored by when they were labelled; trimmed to the newest `REVIEWED_KEPT`."""
IMAGE_KEY = REVIEW_KEY + "image:"
"""Hash per retained copy (`mime`, `data`), expiring after the retention."""
IMAGES_KEY = REVIEW_KEY + "images"
"""Sorted set: retained ids scored by their expiry, so the number of copies can be bounded."""
REVIEWED_KEPT = 100_000
