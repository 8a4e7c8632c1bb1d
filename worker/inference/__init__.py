"""Inference: the backend interface, the SGLang HTTP client, and the LlavaGuard adapter on top of them.

    base.py            InferenceBackend protocol, VisionRequest, Completion (no I/O)
    sglang_wire.py     SGLang/OpenAI JSON bodies (no I/O)
    sglang_client.py   SGLangClient: HTTP, in-flight window, error translation
    output_parser.py   parse_assessment: tolerant reading of the model's answer
    llavaguard.py      LlavaGuardJudge: sampling, schema, parse-and-retry
"""

from worker.inference.base import Completion, InferenceBackend, VisionRequest
from worker.inference.llavaguard import ASSESSMENT_SCHEMA, Judgement, LlavaGuardJudge
from worker.inference.output_parser import Assessment, OutputUnparseable, parse_assessment
from worker.inference.sglang_client import SGLangClient

__all__ = [
    "ASSESSMENT_SCHEMA",
    "Assessment",
    "Completion",
    "InferenceBackend",
    "Judgement",
    "LlavaGuardJudge",
    "OutputUnparseable",
    "SGLangClient",
    "VisionRequest",
    "parse_assessment",
]
