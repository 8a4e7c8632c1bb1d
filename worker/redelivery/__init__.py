"""Redelivery: what happens to a message whose worker died while holding it.

- `lease`: every living worker keeps re-stamping the messages it holds in kombu's `unacked_index`, so a short
  visibility timeout (60 s) recovers a dead worker's messages quickly without ever redelivering one whose
  worker is alive (a long bulk batch, a slow model server, a retry countdown).
- `deliveries`: a message redelivered too often (its workers keep dying on it) ends in a `worker_lost`
  verdict instead of crash-looping the fleet; a redelivered batch is split so only the culprit ends so.
"""
