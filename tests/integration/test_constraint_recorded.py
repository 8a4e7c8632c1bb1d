"""A real worker process records on each verdict the constraint its answer was decoded under.

Against the stand-in speaking SGLang: the training-layout regex; against a stand-in that refuses `regex` (like
an SGLang build without regex grammar support), the JSON schema, with the refusal logged once; with
`LLAVAGUARD_CONSTRAINED_DECODING=false`, none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from worker.policy import PolicyRegistry, prompt_sha256
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

O6_DECLARED_SHA256 = "01a3b6a8876f161df20a4e432e83572cc5ab1f77b2a2b982f8f3db536cc72164"
"""The authors' O6-declared v1.2 prompt (tests/unit/test_policy_declarations.py)."""


@pytest.mark.parametrize(
    ("regex_supported", "extra", "expected"),
    [(True, {}, "regex"), (False, {}, "json_schema"), (True, {"constrained_decoding": "false"}, "none")],
    ids=["sglang", "sglang-without-regex", "unconstrained"],
)
def test_the_verdict_records_the_constraint_used(
    fresh_redis: str, tmp_path: Path, regex_supported: bool, extra: dict[str, str], expected: str
) -> None:
    with SGLangStandIn("127.0.0.1", 0, service_time_s=0.0, regex=regex_supported) as server:
        settings = {"redis_url": fresh_redis, "sglang_url": server.url,
                    "store_url": f"sqlite:///{tmp_path}/v.db", **extra}
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=2) as (worker,):
            with ModerationClient(settings=load_settings(**settings)) as client:
                # One after the other, so the refused regex request is exactly one.
                waived = client.wait(client.submit(make_image("O6"), non_violating=["O6"]), timeout=60)
                unsafe = client.wait(client.submit(make_image("O2")), timeout=60)
            log = worker.output()
        requests = server.stats()["total_requests"]
    assert (waived.status, unsafe.status) == ("completed", "completed")
    assert (waived.constraint, unsafe.constraint) == (expected, expected)
    assert (waived.backend, unsafe.backend) == ("sglang", "sglang")
    assert (waived.rating, unsafe.rating) == ("Safe", "Unsafe")
    declared = PolicyRegistry().prompt("llavaguard-v1.2", ["O6"])
    assert waived.policy.sha256 == O6_DECLARED_SHA256 == prompt_sha256(declared)
    refusals = log.count("refused the regex constraint")
    if regex_supported:
        assert refusals == 0 and requests == 2
    else:
        assert refusals == 1, log  # once per process, however many moderations
        assert requests == 3  # one refused regex request, then the schema for both
