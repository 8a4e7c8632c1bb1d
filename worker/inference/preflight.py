"""The worker's start-up look at its model server: one log line saying whether it will be able to judge.

Why: a refused API key (401/403) fails every moderation `inference_rejected` at once, which looks like a
flood of bad requests unless the worker says at start that its key is the problem. An unreachable server is
only a warning (it may still be loading its model; moderations retry). Never raises and never stops the
worker: the server may be fixed while the worker runs.
"""

from __future__ import annotations

import structlog

from worker.errors import InferenceUnavailable, ModerationFailed
from worker.inference.chat_client import ChatCompletionsClient

log = structlog.get_logger(__name__)


def report_model_server(client: ChatCompletionsClient, backend: str) -> None:
    """Closes `client` when done (the composition root builds one for this look only)."""
    with client:
        try:
            model = client.model_name()
        except ModerationFailed as exc:  # only a refused key (401/403) fails permanently here
            log.error("inference.api_key_refused", sglang_url=client.base_url, backend=backend,
                      error=exc.message, consequence="every moderation fails inference_rejected until the key is fixed")
        except InferenceUnavailable as exc:
            log.warning("inference.server_unavailable_at_start", sglang_url=client.base_url,
                        backend=backend, error=exc.message)
        else:
            log.info("inference.server_ready", sglang_url=client.base_url, backend=backend, model=model)
