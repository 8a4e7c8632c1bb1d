"""Operating the worker: Prometheus metrics, the heartbeat behind `llavaguard health`, and the Celery wiring.

- `metrics`: the `llavaguard_*` metrics and the functions that record them (pipeline stages, verdict hook,
  retries, webhook deliveries);
- `multiproc`, `exporter`, `queue_depth`: one `/metrics` endpoint per worker that is correct under
  Celery's prefork pool as well as under threads;
- `heartbeat`: liveness written from the consumer loop, read by `llavaguard health`;
- `wiring`: connects all of it to a worker process (signals, a consumer bootstep).

Keep this file free of imports: `llavaguard worker` must set PROMETHEUS_MULTIPROC_DIR before any module
here that imports prometheus_client is loaded.
"""
