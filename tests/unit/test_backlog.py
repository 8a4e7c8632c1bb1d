"""The bounded backlog: an audit publishes only while the queue holds less than the backlog, and reads
verdicts while it waits."""

from __future__ import annotations

from producers.bulk.backlog import Backlog


def test_it_pauses_while_the_queue_is_full_and_asks_redis_only_when_its_credit_is_spent() -> None:
    queued = [0]
    asked = [0]
    pauses = [0]

    def waiting() -> int:
        asked[0] += 1
        return queued[0]

    def drain() -> None:  # a worker takes three messages while the audit waits
        pauses[0] += 1
        queued[0] = max(0, queued[0] - 3)

    backlog = Backlog(waiting, batch_size=10, limit_images=50, on_pause=drain, poll_s=0.001)
    for _ in range(20):
        backlog.wait_for_room()
        queued[0] += 1  # the batch just published
        assert queued[0] <= 5, "never more than limit_images / batch_size messages queued"
    assert pauses[0] > 0 and asked[0] < 20, "paused when full; no round trip per batch while there is room"


def test_a_backlog_below_one_batch_still_lets_one_batch_through() -> None:
    backlog = Backlog(lambda: 0, batch_size=64, limit_images=1)
    backlog.wait_for_room()
    assert backlog.paused_s == 0
