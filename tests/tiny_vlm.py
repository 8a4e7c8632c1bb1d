"""A tiny LlavaOnevision checkpoint with random weights, built from a config on the CPU in about a second.

It stands in for `AIML-TUDA/LlavaGuard-v1.2-0.5B-OV-hf` in tests of the in-process backend: the same classes
(SigLIP vision tower, Qwen2 text tower, the LlavaOnevision processor and image processor), a few layers and
dims wide, and a byte-level BPE tokenizer trained here on LlavaGuard's prompt and answer vocabulary with the
special tokens the chat template needs. Saved to a folder and loaded back by path, so nothing comes from a hub.

Random weights say nothing, so one thing is set by hand: the model strongly prefers the `"` token (one
residual dimension is constant and only the `"` row of the output head reads it). Unconstrained, it writes
quote after quote, which is no assessment; only a constraint turns that into a whole, parseable answer (every
string closes at once), which makes "the constraint is honoured" something a test can see.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers reads it: these tests never reach a hub

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Config,
    Qwen2TokenizerFast,
    Qwen2VLImageProcessor,
    SiglipVisionConfig,
)

from worker.categories import CATEGORIES, RATINGS
from worker.inference.training_format import training_layout
from worker.models import DEFAULT_POLICY
from worker.policy import PolicyRegistry

IMAGE_SIDE = 28
PATCH = 14
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
QWEN_SPECIAL_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The shape of Qwen2.5-VL's template (QwenGuard): the image between vision markers, before the text."""
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The shape of LlavaGuard-OV's own template (Qwen2 turns, image before the text)."""


def _corpus() -> list[str]:
    answers = [training_layout(rating, category, "The image shows nothing of concern.")
               for rating in RATINGS for category in CATEGORIES]
    return [PolicyRegistry().prompt(DEFAULT_POLICY), *answers, json.dumps({"rating": "Safe"})]


def _train(vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


def build_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=_train(vocab_size, SPECIAL_TOKENS), eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<image>", "<video>"],
    )


def _prefer_quote(model: torch.nn.Module, quote_id: int) -> None:
    """Dimension 0 of the text tower's residual stream is 1 for every token and no layer writes it."""
    decoder_layers = [module for module in model.modules() if hasattr(getattr(module, "self_attn", None), "o_proj")]
    assert decoder_layers, "no text decoder layers found"
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 1.0
        for layer in decoder_layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        head = model.get_output_embeddings().weight
        head[:, 0] = 0.0
        head[quote_id, 0] = 3.0


def build_tiny_checkpoint(folder: Path, *, seed: int = 0) -> Path:
    """Write processor and random weights to `folder`; returns it (loadable with `from_pretrained`)."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": IMAGE_SIDE, "width": IMAGE_SIDE}, image_grid_pinpoints=[[IMAGE_SIDE, IMAGE_SIDE]]
    )
    video_processor = LlavaOnevisionVideoProcessor(size={"height": IMAGE_SIDE, "width": IMAGE_SIDE})
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
        num_image_tokens=(IMAGE_SIDE // PATCH) ** 2, vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            image_size=IMAGE_SIDE, patch_size=PATCH,
        ),
        text_config=Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=False,
            sliding_window=None,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1,
        image_grid_pinpoints=[[IMAGE_SIDE, IMAGE_SIDE]], tie_word_embeddings=False,
    )
    model = LlavaOnevisionForConditionalGeneration(config)
    _prefer_quote(model, tokenizer.convert_tokens_to_ids('"'))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_qwen_checkpoint(folder: Path, *, seed: int = 0) -> Path:
    """The same for Qwen2.5-VL (QwenGuard's architecture): a 56x56 image is 4 merged image tokens."""
    torch.manual_seed(seed)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=_train(600, [*SPECIAL_TOKENS[:3], *QWEN_SPECIAL_TOKENS]),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None,
        additional_special_tokens=QWEN_SPECIAL_TOKENS,
    )
    side = 2 * 2 * PATCH  # two merged units of two patches each way
    image_processor = Qwen2VLImageProcessor(min_pixels=side * side, max_pixels=side * side)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    chat_template=QWEN_CHAT_TEMPLATE)
    config = Qwen2_5_VLConfig(
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                       "out_hidden_size": 32, "patch_size": PATCH, "window_size": side,
                       "fullatt_block_indexes": [0]},
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=False,
            sliding_window=None,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    _prefer_quote(model, tokenizer.convert_tokens_to_ids('"'))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
