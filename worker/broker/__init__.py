"""The broker boundary: a Redis transport that refuses poison messages before kombu or Celery decode them.

`guard` decides whether raw bytes popped from a queue are a Celery message this worker can run, `deadletter`
keeps the refused ones in a bounded Redis list (`llavaguard:deadletter`), `transport` plugs both into kombu.
"""
