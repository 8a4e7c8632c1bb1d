"""One batched `generate` over a LlavaOnevision or Qwen2.5-VL checkpoint, and the answers cut back per request.

Everything torch-specific lives here: loading the processor and model, the chat template (image first, then
the prompt, as LlavaGuard was trained), left padding so every row's answer starts at the same column, sampling
settings from the request (temperature 0 = greedy), the per-row constraint, and log-probabilities taken from
the scores `generate` returns (the processed logits: after the constraint mask, temperature, top-k and top-p,
so they describe the distribution each token was actually drawn from). Library errors become
`worker.errors` here and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lmformatenforcer import TokenEnforcer, TokenEnforcerTokenizerData
from PIL import Image
from transformers import AutoModelForImageTextToText, LogitsProcessorList
from transformers.models.auto.processing_auto import AutoProcessor

from worker.errors import ErrorCode, InferenceUnavailable, ModerationFailed
from worker.inference.base import Completion, TokenLogprob, VisionRequest
from worker.inference.hf_constraint import Parsers, RowConstraints, tokenizer_data

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Prepared:
    """A request whose image is already decoded (a bad image fails its own caller, not the batch)."""

    request: VisionRequest
    image: Image.Image


def sampling_key(prepared: Prepared) -> Hashable:
    """Requests that can share one `generate`: same sampling settings (greedy ones all alike)."""
    request = prepared.request
    if request.temperature <= 0:
        return ("greedy",)
    return ("sample", request.temperature, request.top_p, request.top_k)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto or one of {sorted(DTYPES)}, not {dtype!r}") from None


def messages(prompt: str) -> list[dict[str, Any]]:
    """One user turn: the image, then the policy prompt (LlavaGuard's training order)."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


class LoadedModel:
    """The processor and weights of one checkpoint, on one device; `generate` runs one batch at a time."""

    def __init__(self, processor: Any, model: Any, device: str) -> None:
        self.processor = processor
        self.model = model
        self.device = device
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        eos = model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(self.tokenizer.eos_token_id)
        self.eos_ids: tuple[int, ...] = tuple(eos_ids)
        pad = self.tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else self.eos_ids[0]
        self._tokenizer_data: TokenEnforcerTokenizerData | None = None
        self._data_lock = threading.Lock()
        self._parsers = Parsers()

    @classmethod
    def load(cls, model_path: str, *, device: str, dtype: str) -> LoadedModel:
        """Read the checkpoint (a local folder or a hub id); any failure is transient to the caller."""
        resolved = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, resolved)
        try:
            processor = AutoProcessor.from_pretrained(model_path)
            model = AutoModelForImageTextToText.from_pretrained(model_path, torch_dtype=torch_dtype)
            model.to(resolved)
            model.eval()
        except torch.cuda.OutOfMemoryError as exc:
            raise InferenceUnavailable(f"out of GPU memory loading {model_path}: {exc}") from exc
        except (OSError, ValueError, RuntimeError, KeyError, ImportError) as exc:
            raise InferenceUnavailable(f"could not load model {model_path}: {exc}") from exc
        loaded = cls(processor, model, resolved)
        loaded.enforcer_data()  # the vocabulary table for constraints, now rather than in the first request
        return loaded

    def enforcer_data(self) -> TokenEnforcerTokenizerData:
        with self._data_lock:
            if self._tokenizer_data is None:
                self._tokenizer_data = tokenizer_data(self.tokenizer, self.eos_ids)
            return self._tokenizer_data

    def generate(self, batch: Sequence[Prepared]) -> list[Completion | BaseException]:
        """One `generate` for the whole batch; if the inputs are refused, each request is tried alone."""
        try:
            return list(self._generate(batch))
        except ModerationFailed as exc:
            if len(batch) == 1:
                return [exc]
        results: list[Completion | BaseException] = []
        for prepared in batch:
            try:
                results.extend(self._generate([prepared]))
            except ModerationFailed as exc:
                results.append(exc)
        return results

    def _generate(self, batch: Sequence[Prepared]) -> list[Completion]:
        requests = [prepared.request for prepared in batch]
        inputs = self._inputs(batch)
        prompt_length = int(inputs["input_ids"].shape[1])
        first = requests[0]
        want_logprobs = any(request.top_logprobs > 0 for request in requests)
        options: dict[str, Any] = {
            "max_new_tokens": max(request.max_tokens for request in requests),
            "return_dict_in_generate": True,
            "output_scores": want_logprobs,
            "pad_token_id": self.pad_id,
            "eos_token_id": list(self.eos_ids),
        }
        if first.temperature > 0:
            options |= {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p,
                        "top_k": max(first.top_k, 0)}
        else:
            options |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        enforcers = [self._enforcer(request) for request in requests]
        if any(enforcer is not None for enforcer in enforcers):
            options["logits_processor"] = LogitsProcessorList(  # type: ignore[no-untyped-call]
                [RowConstraints(enforcers, prompt_length, self.eos_ids)]
            )
        try:
            with torch.inference_mode():
                output = self.model.generate(**inputs, **options)
        except torch.cuda.OutOfMemoryError as exc:
            raise InferenceUnavailable(f"out of GPU memory generating a batch of {len(batch)}: {exc}") from exc
        except RuntimeError as exc:
            raise InferenceUnavailable(f"generation failed: {exc}") from exc
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            self._completion(request, output, row, prompt_length, int(prompt_tokens[row]))
            for row, request in enumerate(requests)
        ]

    def _inputs(self, batch: Sequence[Prepared]) -> Any:
        try:
            texts = [
                self.processor.apply_chat_template(
                    messages(prepared.request.prompt), add_generation_prompt=True, tokenize=False
                )
                for prepared in batch
            ]
            inputs = self.processor(
                images=[prepared.image for prepared in batch], text=texts, padding=True, return_tensors="pt",
                input_data_format="channels_last",  # PIL's layout; guessed, a 1x3 image would be read as channels
            )
        except (ValueError, TypeError, IndexError) as exc:
            message = f"the model's processor refused the input: {exc}"
            raise ModerationFailed(ErrorCode.INFERENCE_REJECTED, message) from exc
        inputs.pop("token_type_ids", None)  # the tokenizer returns them; the vision models take none
        return inputs.to(self.device)

    def _enforcer(self, request: VisionRequest) -> TokenEnforcer | None:
        if request.regex is not None:
            return TokenEnforcer(self.enforcer_data(), self._parsers.regex(request.regex))
        if request.json_schema is not None:
            return TokenEnforcer(self.enforcer_data(), self._parsers.schema(request.json_schema))
        return None

    def _completion(
        self, request: VisionRequest, output: Any, row: int, prompt_length: int, prompt_tokens: int
    ) -> Completion:
        generated = output.sequences[row, prompt_length:].tolist()[: request.max_tokens]
        finish = "length"
        for index, token in enumerate(generated):
            if token in self.eos_ids:
                generated, finish = generated[:index], "stop"
                break
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        logprobs = self._logprobs(output.scores, row, generated, request.top_logprobs) if request.top_logprobs else None
        return Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(generated),
            logprobs=logprobs,
        )

    def _logprobs(
        self, scores: Sequence[torch.Tensor], row: int, generated: Sequence[int], top: int
    ) -> tuple[TokenLogprob, ...]:
        """Log-softmax of each step's processed logits: the chosen token and the `top` most likely ones."""
        result = []
        for step, token in enumerate(generated):
            logp = torch.log_softmax(scores[step][row].float(), dim=-1)
            values, ids = torch.topk(logp, k=min(top, logp.shape[-1]))
            alternatives = tuple(
                (self.tokenizer.decode([int(i)]), float(v))
                for v, i in zip(values.tolist(), ids.tolist(), strict=True)
                if v != float("-inf")
            )
            result.append(TokenLogprob(self.tokenizer.decode([token]), float(logp[token]), alternatives))
        return tuple(result)
