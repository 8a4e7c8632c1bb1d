"""The inference backend interface: what the LlavaGuard adapter needs from any vision-language server.

A backend turns one image + one prompt into generated text. It knows nothing about verdicts, and the
adapter knows nothing about HTTP; another OpenAI-compatible server (vLLM) or an in-process model plugs in by
implementing `InferenceBackend`. Backends raise only `worker.errors` exceptions, never their library's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Constraint = Literal["regex", "json_schema", "none"]
"""How generation was constrained: a regular expression of the training layout, a JSON schema, or not at all."""


@dataclass(frozen=True, kw_only=True)
class VisionRequest:
    """One generation over one image; sampling values are explicit so no backend default leaks in."""

    image: bytes = field(repr=False)
    mime: str
    prompt: str = field(repr=False)
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    json_schema: Mapping[str, Any] | None = field(default=None, hash=False, repr=False)
    """Constrain the output to this JSON schema (constrained decoding), or None for free text."""
    regex: str | None = field(default=None, hash=False, repr=False)
    """Constrain the output to this regular expression instead; at most one of `regex` and `json_schema` is set."""
    top_logprobs: int = 0
    """How many alternatives per generated token to return with their log-probabilities (0: none)."""

    @property
    def constraint(self) -> Constraint:
        if self.regex is not None:
            return "regex"
        return "json_schema" if self.json_schema is not None else "none"


@dataclass(frozen=True)
class TokenLogprob:
    """One generated position: the token chosen, its log-probability, and the most likely alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()
    """(token text, log-probability) pairs, most likely first, as many as the request asked for."""


@dataclass(frozen=True)
class Completion:
    """What the model wrote; usage fields are None when the server does not report them."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    """Per generated token, in order; None when the request asked for none or the backend returned none."""


@runtime_checkable
class InferenceBackend(Protocol):
    """A model server seen from the worker; implementations must be safe to call from many threads."""

    def model_name(self) -> str:
        """The served model's name, recorded in every verdict."""
        ...

    def backend_name(self) -> str:
        """The backend family (`sglang`, `vllm`, `openai`, `transformers`), recorded in every verdict."""
        ...

    def constraints(self) -> frozenset[Constraint]:
        """The constraints this backend honours (`none` is always among them)."""
        ...

    def complete(self, request: VisionRequest) -> Completion:
        """Generate once; raise InferenceUnavailable (retry) or ModerationFailed (input refused)."""
        ...
