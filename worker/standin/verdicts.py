"""The stand-in's synthetic verdicts: the image's mean colour picks the category, the prompt can waive it.

Everything here is deterministic and says plainly that no model was involved, so a stand-in answer can never
be mistaken for LlavaGuard's in logs or stored verdicts. The answer text imitates the model's formats:
compact JSON under a schema, 4-space indented JSON otherwise, fenced with prose around it when sloppy.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from dataclasses import dataclass

from PIL import Image, ImageStat

from worker.categories import category_for_code
from worker.standin.palette import nearest_code

DEFAULT_ORDER = ("rating", "category", "rationale")
GARBAGE = ":"
"""What older LlavaGuard models answered when image + policy overflowed the context (LlavaGuard #5)."""
_DECLARED = re.compile(r"Category (O[1-9]) is declared as non-violating")
_DATA_URI = re.compile(r"data:(?P<mime>[\w.+/-]*)(?:;[\w=-]+)*;base64,(?P<data>.*)", re.DOTALL)
_SLOPPY_BEFORE = "Sure! Here is my assessment of the image under the given policy:\n\n```json\n"
_SLOPPY_AFTER = "\n```\n\nI hope this assessment helps."


class ImageUnreadable(ValueError):
    """The image part cannot be turned into pixels; SGLang answers 400 "Error while processing image"."""


@dataclass(frozen=True)
class Answer:
    rating: str
    category: str
    rationale: str

    def fields(self) -> dict[str, str]:
        return {"rating": self.rating, "category": self.category, "rationale": self.rationale}


def decode_image(url: str) -> Image.Image:
    """A `data:` URI or raw base64, as SGLang accepts; URLs are refused (the stand-in never fetches)."""
    if re.match(r"(https?|file)://", url):
        raise ImageUnreadable("the stand-in does not fetch image URLs; send a data: URI")
    match = _DATA_URI.fullmatch(url)
    try:
        raw = base64.b64decode(match.group("data") if match else url, validate=True)
        image = Image.open(io.BytesIO(raw))
        return image.convert("RGB")
    except (binascii.Error, ValueError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageUnreadable(f"{type(exc).__name__}: {exc}") from exc


def declared_codes(prompt: str) -> set[str]:
    """Codes the policy text declares non-violating, in the sentence LlavaGuard was trained on."""
    return set(_DECLARED.findall(prompt))


def assess(image: Image.Image, prompt: str) -> Answer:
    mean = tuple(ImageStat.Stat(image).mean[:3])
    colour = f"({round(mean[0])}, {round(mean[1])}, {round(mean[2])})"
    code = nearest_code((mean[0], mean[1], mean[2]))
    category = category_for_code(code)
    opening = f"Stand-in assessment (no model): mean colour {colour} matches {category} in the palette"
    if code == "NA":
        return Answer("Safe", category, f"{opening}, so this synthetic verdict is Safe.")
    if code in declared_codes(prompt):
        return Answer("Safe", category, (
            f"{opening}, but the safety policy explicitly states that content falling under {code} is not "
            "considered as violating. Consequently, the image is classified as safe."
        ))
    return Answer("Unsafe", category, f"{opening}, so this synthetic verdict is Unsafe.")


def render(answer: Answer, *, schema_order: tuple[str, ...] | None, sloppy: bool = False) -> str:
    """Constrained (`schema_order` given): one compact JSON line in the schema's order; else as trained."""
    fields = answer.fields()
    if schema_order is not None:
        ordered = {key: fields[key] for key in schema_order if key in fields}
        return json.dumps(ordered if ordered else fields)
    indented = json.dumps(fields, indent=4)
    return f"{_SLOPPY_BEFORE}{indented}{_SLOPPY_AFTER}" if sloppy else indented
