"""`SGLangStandIn`: a local HTTP server speaking the part of SGLang's API the worker uses. It is NOT a model.

It exists so tests and GPU-less local runs exercise the real client, the real wire format and real
concurrency. Its verdicts are synthetic (the image's mean colour picks the category, see `palette.py`), and
it says so everywhere it can: model id `llavaguard-standin`, model_info, every rationale. It must never be
configured as, or reported as, LlavaGuard.

Capacity is modelled (`max_running` at once, each taking `service_time_s`, an optional bounded queue) and
counted, so a test can read `/standin/stats` and see how many requests a client really kept in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self

from worker.standin.capacity import CapacityGate, QueueFull
from worker.standin.dialects import Dialect, DialectName, LogprobRequest, Refused
from worker.standin.jobs import chat_job, generate_jobs
from worker.standin.logprobs import chat_logprobs, native_logprobs, rating_probability
from worker.standin.regex_answers import RegexRefused, regex_answer
from worker.standin.server import JsonServer
from worker.standin.verdicts import GARBAGE, ImageUnreadable, assess, decode_image, render
from worker.standin.wire import (
    QUEUE_FULL,
    BadRequest,
    Job,
    Output,
    chat_response,
    finish,
    generate_item,
    load_json,
    native_error,
)

STANDIN_MODEL = "llavaguard-standin"
STANDIN_MODEL_PATH = "llavaguard-standin (not a model: synthetic answers)"
Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Route = Callable[[bytes], Reply]


class _Faults:
    """Countdowns for injected failures: the first N requests fail, then the server behaves."""

    def __init__(self, fail_first: int, garbage_first: int) -> None:
        self._lock = threading.Lock()
        self.fail_left, self.garbage_left = fail_first, garbage_first
        self.failed = self.garbled = 0

    def take_failure(self) -> bool:
        with self._lock:
            if self.fail_left <= 0:
                return False
            self.fail_left -= 1
            self.failed += 1
            return True

    def take_garbage(self) -> bool:
        with self._lock:
            if self.garbage_left <= 0:
                return False
            self.garbage_left -= 1
            self.garbled += 1
            return True


class SGLangStandIn:
    """Start with `start()` (or `with`); `port=0` picks a free port, then `.url` says where it listens."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        max_running: int = 32,
        service_time_s: float = 0.05,
        max_queued: int | None = None,
        *,
        fail_first: int = 0,
        garbage_first: int = 0,
        sloppy: bool = False,
        api_key: str | None = None,
        regex: bool = True,
        dialect: DialectName = "sglang",
        retry_after_s: float | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.regex_supported = regex  # False: refuse `regex` as a build without regex grammar support does
        self.dialect = Dialect(dialect, STANDIN_MODEL)
        """Which server's fields and error bodies `/v1/chat/completions` speaks (`worker.standin.dialects`)."""
        self.retry_after_s = retry_after_s
        """Sent as `Retry-After` with every overload answer (None: no header, as SGLang)."""
        self.service_time_s = service_time_s
        self.sloppy = sloppy
        self.api_key = api_key
        self.gate = CapacityGate(max_running, max_queued)
        self._faults = _Faults(fail_first, garbage_first)
        self._requests = 0
        self._unauthorized = 0
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: JsonServer | None = None
        self._thread: threading.Thread | None = None
        self._created = int(time.time())
        self._routes: dict[tuple[str, str], Route] = {
            ("GET", "/health"): self._empty_ok,
            ("GET", "/health_generate"): self._empty_ok,
            ("GET", "/ready"): self._empty_ok,
            ("GET", "/model_info"): lambda _: (200, self.model_info()),
            ("GET", "/get_model_info"): lambda _: (200, self.model_info()),
            ("GET", "/v1/models"): lambda _: (200, self.models()),
            ("GET", "/standin/stats"): lambda _: (200, self.stats()),
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/generate"): self._generate,
        }

    # Lifecycle.

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the stand-in is not started")
        return f"http://{self.host}:{self._httpd.server_port}"

    def start(self) -> Self:
        """Bind and listen, serve from a daemon thread; returns once connections are accepted."""
        if self._httpd is not None:
            raise RuntimeError("the stand-in is already started")
        self._stopping.clear()
        self._httpd = JsonServer((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections; answers in progress are dropped, as in a crash."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start() if self._httpd is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # Introspection.

    def stats(self) -> dict[str, Any]:
        with self._count_lock:
            total, unauthorized = self._requests, self._unauthorized
        return {
            "total_requests": total,
            "unauthorized_requests": unauthorized,
            "injected_failures": self._faults.failed,
            "garbage_answers": self._faults.garbled,
            "service_time_s": self.service_time_s,
            **self.gate.snapshot(),
        }

    def model_info(self) -> dict[str, Any]:
        return {
            "model_path": STANDIN_MODEL_PATH,
            "tokenizer_path": None,
            "is_generation": True,
            "preferred_sampling_params": None,
            "weight_version": "default",
            "has_image_understanding": True,
            "has_audio_understanding": False,
            "model_type": "standin",
            "architectures": ["SGLangStandIn"],
            "served_model_name": STANDIN_MODEL,
        }

    def models(self) -> dict[str, Any]:
        model = {"id": STANDIN_MODEL, "object": "model", "created": self._created, "owned_by": "sglang",
                 "root": STANDIN_MODEL_PATH, "parent": None, "max_model_len": 32768}
        return {"object": "list", "data": [model]}

    # Requests.

    def handle(self, method: str, path: str, body: bytes, authorization: str | None) -> Reply:
        path = path.split("?", 1)[0]
        if self.api_key and not path.startswith("/health") and authorization != f"Bearer {self.api_key}":
            with self._count_lock:
                self._unauthorized += 1
            return 401, {"error": "Unauthorized"}
        route = self._routes.get((method, path))
        if route is not None:
            return route(body)
        if any(known == path for _, known in self._routes):
            return 405, {"detail": "Method Not Allowed"}
        return 404, {"detail": "Not Found"}

    def _empty_ok(self, _: bytes) -> tuple[int, Any]:
        return 200, None

    def _chat(self, body: bytes) -> Reply:
        self._count_request()
        dialect = self.dialect
        try:
            payload, logprobs = dialect.read(load_json(body))
            job = chat_job(payload)
            output = self._run(job)
        except Refused as exc:
            return exc.status, dialect.error(str(exc), exc.status)
        except BadRequest as exc:
            return 400, dialect.error(str(exc))
        except ImageUnreadable as exc:
            return 400, dialect.error(f"Error while processing image: {exc}")
        except RegexRefused as exc:
            return 400, dialect.error(str(exc))
        except QueueFull:
            return self._overloaded(*dialect.overloaded())
        response = chat_response(output, STANDIN_MODEL)
        if logprobs is not None:
            response["choices"][0]["logprobs"] = chat_logprobs(output.text, self._sureness(job), logprobs.top)
        return 200, response

    def _overloaded(self, status: int, body: Any) -> Reply:
        if self.retry_after_s is None:
            return status, body
        return status, body, {"Retry-After": f"{self.retry_after_s:g}"}

    def _sureness(self, job: Job) -> float:
        return rating_probability(decode_image(job.image_url))

    def _generate(self, body: bytes) -> Reply:
        self._count_request()
        started = time.monotonic()
        try:
            payload = load_json(body)
            jobs, batch = generate_jobs(payload)
            outputs = self._run_all(jobs)
        except BadRequest as exc:
            return 400, native_error(str(exc))
        except ImageUnreadable as exc:
            return 400, native_error(f"Error while processing image: {exc}")
        except RegexRefused as exc:
            return 400, native_error(str(exc))
        except QueueFull:
            return self._overloaded(503, native_error(QUEUE_FULL))
        items = [generate_item(output, time.monotonic() - started) for output in outputs]
        wanted = _native_logprob_request(payload)
        if wanted is not None:
            for item, job, output in zip(items, jobs, outputs, strict=True):
                item["meta_info"].update(native_logprobs(
                    output.text, self._sureness(job), wanted.top, payload.get("return_text_in_logprobs") is True
                ))
        return 200, items if batch else items[0]

    def _run_all(self, jobs: list[Job]) -> list[Output]:
        """A native batch runs its items concurrently, as SGLang schedules them together."""
        if len(jobs) == 1:
            return [self._run(jobs[0])]
        with ThreadPoolExecutor(max_workers=min(len(jobs), 256), thread_name_prefix="standin-batch") as pool:
            return list(pool.map(self._run, jobs))

    def _run(self, job: Job) -> Output:
        """Injected 503 -> image and regex checks (400) -> queue and `service_time_s` -> answer (maybe garbage)."""
        if self._faults.take_failure():
            raise QueueFull
        answer = assess(decode_image(job.image_url), job.prompt)
        constrained = None if job.regex is None else regex_answer(answer, job.regex, supported=self.regex_supported)
        with self.gate.slot():
            self._stopping.wait(self.service_time_s)
        if self._faults.take_garbage():
            return finish(job, GARBAGE)
        if constrained is not None:
            return finish(job, constrained)
        return finish(job, render(answer, schema_order=job.schema_order, sloppy=self.sloppy))

    def _count_request(self) -> None:
        with self._count_lock:
            self._requests += 1


def _native_logprob_request(payload: Any) -> LogprobRequest | None:
    """`return_logprob` / `top_logprobs_num` of a `/generate` body (one value for the whole batch)."""
    if not isinstance(payload, dict) or payload.get("return_logprob") is not True:
        return None
    top = payload.get("top_logprobs_num")
    return LogprobRequest(top if isinstance(top, int) and not isinstance(top, bool) and top > 0 else 0)
