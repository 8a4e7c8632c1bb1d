"""Producers push moderation tasks onto the queues that the workers drain."""

from producers.client import ModerationClient, Submission, moderation_id_for_key
from worker.models import Verdict

__all__ = ["ModerationClient", "Submission", "Verdict", "moderation_id_for_key"]
