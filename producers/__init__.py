"""Producers push moderation tasks onto the queues that the workers drain."""

from producers.client import ModerationClient, Submission
from worker.errors import IdempotencyConflict
from worker.models import Verdict

__all__ = ["IdempotencyConflict", "ModerationClient", "Submission", "Verdict"]
