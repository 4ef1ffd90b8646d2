"""Progress of a long pass over a video: a bar on stderr for the command line, a callback
for other front ends (the web page), or nothing.

A callback may raise to stop the work (the web page's cancel button does): the exception
leaves the pass like any other error, and the output is not written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm

ProgressCallback = Callable[[str, int, int], None]
"""``callback(stage, frames done, frames in all)``, after each batch."""


class Progress:
    """Counts frames of one stage (``animate``, ``find subject``...).

    Args:
        report: True for a bar on stderr (frames/s and the time left), a
            :data:`ProgressCallback`, or False for nothing.
    """

    def __init__(self, stage: str, total: int, report: bool | ProgressCallback) -> None:
        self.stage, self.total, self.done = stage, total, 0
        self._callback = report if callable(report) else None
        self._bar = tqdm(total=total, desc=stage, unit="frame", disable=report is not True,
                         file=sys.stderr, dynamic_ncols=True, leave=False)

    def update(self, frames: int) -> None:
        self.done += frames
        self._bar.update(frames)
        if self._callback is not None:
            self._callback(self.stage, self.done, self.total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self._bar.close()
