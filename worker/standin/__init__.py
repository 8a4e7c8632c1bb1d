"""The SGLang stand-in: a real HTTP server with SGLang's API and synthetic, colour-derived verdicts.

For tests and GPU-less local runs only; it is never a model and never reports itself as one.

    palette.py         the answer key: category -> colour, `make_image`
    verdicts.py        image -> synthetic verdict -> answer text in the model's formats
    regex_answers.py   SGLang's `regex`: the training layout, checked against the pattern (`--no-regex`)
    jobs.py / wire.py  SGLang request bodies in, responses and error bodies out
    capacity.py        max_running / queue / 503 model with counters
    server.py          threaded JSON HTTP server that can cut connections on stop
    sglang_standin.py  SGLangStandIn: routes, fault injection, lifecycle
    cli.py             `python -m worker.standin`
"""

from worker.standin.palette import PALETTE, make_image
from worker.standin.sglang_standin import STANDIN_MODEL, SGLangStandIn

__all__ = ["PALETTE", "STANDIN_MODEL", "SGLangStandIn", "make_image"]
