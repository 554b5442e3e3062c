"""A step's side of ``pipeline.py run``'s console: the lines our code prints for a person are marked.

``commands/local.py`` (the parent, kfp.local's process) shows marked lines and sends everything else to the
run's log; it sets ``ENV`` for the steps it starts. A step run any other way prints as always.
"""

from __future__ import annotations

import os
import sys

ENV = "JAX_MLP_CONSOLE"
MARK = "\x1e"  # ASCII record separator: no text a step prints contains it


# ---- the task's process


class MarkedStream:
    """A text stream that starts each non-empty line written through it with ``MARK`` (and flushes each line)."""

    def __init__(self, stream):
        self._stream = stream
        self._at_start = True

    def write(self, text: str) -> int:
        out = []
        pieces = text.split("\n")
        for i, piece in enumerate(pieces):
            if piece:
                if self._at_start:
                    out.append(MARK)
                out.append(piece)
                self._at_start = False
            if i < len(pieces) - 1:
                out.append("\n")
                self._at_start = True
        self._stream.write("".join(out))
        if "\n" in text:  # a pipe is block-buffered: a person sees each epoch's line when it is printed
            self._stream.flush()
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def mark_stdout(environ=os.environ) -> None:
    """In a task's process of ``pipeline.py run`` (``ENV`` set): mark what our code prints (idempotent)."""
    if environ.get(ENV) == "1" and not isinstance(sys.stdout, MarkedStream) and sys.stdout is not None:
        sys.stdout = MarkedStream(sys.stdout)
