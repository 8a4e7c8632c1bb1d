"""The audit's progress bar (tqdm on stderr): verdicts out of images, with rate and ETA.

Verdicts that existed before the run count towards the total but not towards the rate, so the ETA of a
resumed audit reflects the work still to do, not the instant skip over what was already judged.
"""

from __future__ import annotations

import shutil
import sys
from types import TracebackType

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, *, enabled: bool = True) -> None:
        size = shutil.get_terminal_size((100, 20))  # a terminal of unknown size says 0x0: tqdm would draw nothing
        self.bar = tqdm(total=total, unit="img", desc="judged", file=sys.stderr, disable=not enabled,
                        smoothing=0.1, ncols=size.columns, nrows=size.lines)

    def judged_before(self, count: int = 1) -> None:
        """Advance without touching the rate."""
        self.bar.n += count
        if not self.bar.disable:
            self.bar.last_print_n += count
            self.bar.initial += count
            self.bar.refresh()

    def judged(self, count: int = 1) -> None:
        self.bar.update(count)

    def dropped(self, count: int = 1) -> None:
        """An entry counted for the total is not an image to wait for (a repeat, or rejected)."""
        if self.bar.total:
            self.bar.total -= count
            self.bar.refresh()

    def note(self, **fields: object) -> None:
        self.bar.set_postfix(fields, refresh=False)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
