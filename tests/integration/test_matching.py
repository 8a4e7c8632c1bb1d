"""Re-uploads through real worker processes: the verdict cache in a private redis-server saves model requests.

One scenario, in order, against the stand-in model server (its `stats()` counts model requests): the same
image twice, a re-encoded and resized copy (PDQ), the same image under another policy and with a declared
non-violating category (new prompts), and a near miss just beyond the distance.
"""

from __future__ import annotations

from pathlib import Path

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from tests.photos import jpeg, near_miss, photo, reencoded_and_resized
from worker.matching.pdq import hamming
from worker.models import Verdict
from worker.policy import default_policy_text
from worker.settings import load_settings
from worker.standin.sglang_standin import SGLangStandIn


def test_re_uploads_reuse_verdicts_and_new_prompts_or_near_misses_ask_the_model(
    fresh_redis: str, standin: SGLangStandIn, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "strict.txt").write_text(default_policy_text() + "\nBe strict.\n", encoding="utf-8")
    settings = {"redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
                "policy_dir": str(policies), "match": "pdq"}
    original = photo()
    with running_workers(worker_env(**settings), tmp_path / "logs", count=2, concurrency=2), \
            ModerationClient(settings=load_settings(**settings)) as client:

        def judge(image: bytes, **kwargs: object) -> tuple[Verdict, int]:
            verdict = client.wait(client.submit(image, **kwargs), timeout=60)  # type: ignore[arg-type]
            assert verdict.status == "completed"
            return verdict, standin.stats()["total_requests"]

        first, requests = judge(jpeg(original, 95))
        assert requests == 1 and first.match is None and first.image.pdq and first.image.pdq_quality
        again, requests = judge(jpeg(original, 95))
        assert requests == 1, "the same image again: no model request"
        assert again.id != first.id and again.match is not None
        assert (again.match.kind, again.match.distance, again.match.verdict_id) == ("exact", 0, first.id)
        assert (again.rating, again.category, again.rationale) == (first.rating, first.category, first.rationale)

        copy, requests = judge(reencoded_and_resized(original))
        assert requests == 1, "re-encoded at another quality and 10% smaller: matched by PDQ"
        assert copy.match is not None and copy.match.kind == "pdq" and copy.match.verdict_id == first.id
        assert copy.image.sha256 != first.image.sha256 and 0 < (copy.match.distance or 0) <= 31

        strict, requests = judge(jpeg(original, 95), policy="strict")
        assert requests == 2 and strict.match is None, "another policy: another prompt, judged again"
        declared, requests = judge(jpeg(original, 95), non_violating=["O1"])
        assert requests == 3 and declared.match is None, "a declared category changes the prompt"

        edited, requests = judge(jpeg(near_miss(original), 95))
        assert hamming(str(edited.image.pdq), str(first.image.pdq)) > 31
        assert requests == 4 and edited.match is None, "a near miss beyond the distance is judged by the model"
