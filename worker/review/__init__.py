"""Human review (issue 11): which verdicts a person looks at, the copy of the image they see, and their label.

    judge ─▶ decision (worker/decisions) ─▶ ReviewIntake: queue? retain the model's input   [Moderator step]
          ─▶ store (verdict.review = pending) ─▶ ReviewHook: queue + moderation.review_requested  [hook]
    reviewer (API /v1/reviews, /review page, `llavaguard review`) ─▶ ReviewDesk.label:
          store.record_review (final decision) ─▶ queue: reviewed ─▶ copy deleted ─▶ moderation.reviewed

Why Redis for the queue and the retained copies: it is the one service every worker and API process already
shares and keeps durably (AOF in docker-compose); a sorted set survives restarts, ZADD is idempotent on a
redelivered task, and a key's TTL deletes a copy on time even when no process is running. Whether a verdict
is sampled is a function of its id, so a redelivered moderation decides the same way.

Modules: keys (Redis names), sampling (why a verdict is queued), retention (the copies), queue (the sorted
sets), intake (the Moderator step), hook (after store), desk (what reviewers do). Nothing here reads settings.
"""
