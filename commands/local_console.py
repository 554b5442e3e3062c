"""What ``python pipeline.py run`` prints: a line per task, the steps' own lines, a summary; the rest to a log file.

kfp.local prints everything a run does on the parent's stdout: its own log records through a root-logger
``StreamHandler(sys.stdout)`` made on entry to each ``logging_utils.local_logger_context`` (kfp/local/
logging_utils.py), and every line of each task's process with ``print`` (``subprocess_task_handler.
run_local_subprocess``, child stderr merged into stdout; ``docker_task_handler.run_docker_container``). In a task's
process, kfp's executor logs through ``logging.basicConfig(stream=sys.stdout)`` (kfp/dsl/executor_main.py: the
executor_input dump, before our code runs), and so do tfds, absl and TF.

So the child marks what a person reads: with ``JAX_MLP_CONSOLE=1`` in its environment (the parent sets it for its
tasks only), importing the ``components`` package (every component body imports from it) wraps ``sys.stdout`` in
``MarkedStream``, which starts each line our code prints with ``MARK``. Logging handlers keep the stream object
they were made with, so library logs stay unmarked. The parent (``Console``) reads every line: all go to the run's
log file (marker and ANSI colours stripped); marked lines and a line per task go to the terminal.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

# The task side: what a step marks (components/_console.py); imported here for the parent and its tests.
from components._console import ENV, MARK, MarkedStream, mark_stdout  # noqa: F401

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ---- the parent: kfp.local's process


# kfp.local's records (task_dispatcher.run_single_task_implementation, orchestrator/task_executor.py), as our
# formatter and kfp's MillisecondFormatter write them: "HH:MM:SS[.mmm] - INFO - <message>".
_RECORD = r"^\d\d:\d\d:\d\d(?:\.\d+)? - \w+ - "
_EXECUTING = re.compile(_RECORD + r"Executing task '([^']+)'")
_FINISHED = re.compile(_RECORD + r"Task '([^']+)' finished with status (\w+)")
_CACHE_HIT = re.compile(_RECORD + r"Task (\S+) cache hit")
# A traceback's last line: the exception, its module path dropped (kfp's executor lets it propagate).
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit)\w*)(: .*)?$")


def error_of(lines: "list[str]") -> str:
    """The failing task's error in one line: its last ``error: ...`` line, else its exception's, else its last line."""
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    tracebacks = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if tracebacks:
        after = lines[tracebacks[-1] + 1:]
        for line in after:  # the first unindented line after the frames is the exception
            if line and not line[0].isspace():
                match = _EXCEPTION.match(line)
                return match.group(1) + (match.group(2) or "") if match else line
    return next((line for line in reversed(lines) if line.strip()), "no output")


class Console:
    """Where every line of a local run goes: the log file always; the terminal per ``verbose``."""

    def __init__(self, log: Path, verbose: bool = False, out=None, err=None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.verbose = verbose
        self.colour = verbose and _isatty(self.out)
        self.log = open(log, "a", encoding="utf-8", errors="replace")
        self.log_path = log
        self.task: "str | None" = None
        self.recent: collections.deque[str] = collections.deque(maxlen=400)  # the running task's last lines
        self.reused: list[str] = []
        self.failed: dict[str, str] = {}
        self._lock = threading.RLock()

    def say(self, text: str = "", error: bool = False) -> None:
        """A line of ours: on the terminal and in the log."""
        with self._lock:
            if self.log.closed:
                self.log = open(self.log_path, "a", encoding="utf-8", errors="replace")
            self.log.write(text + "\n")
            self.log.flush()
            stream = self.err if error else self.out
            stream.write(text + "\n")
            stream.flush()

    def line(self, text: str) -> None:
        """One complete line kfp.local printed or logged (a record may hold several lines)."""
        with self._lock:
            for raw in text.split("\n"):
                self._one(raw)

    def _one(self, raw: str) -> None:
        plain = ANSI.sub("", raw).rstrip("\r")
        human = MARK in plain
        # kfp indents a task's lines ("    " + line, logging_utils.indented_print): our marker comes after that
        own = plain[4:] if plain.startswith("    ") else plain
        if human:
            before, _, rest = own.partition(MARK)
            own = (before + rest).replace(MARK, "") if before.strip() else rest.replace(MARK, "")
        self.log.write(plain.replace(MARK, "") + "\n")
        self.log.flush()
        if self.task is not None and own.strip():
            self.recent.append(own)
        if self.verbose:
            self.out.write((raw if self.colour else plain).replace(MARK, "") + "\n")
            self.out.flush()
        elif human:
            self.out.write("  " + own + "\n")
            self.out.flush()
        if not human:
            self._follow(plain)

    def _follow(self, plain: str) -> None:
        """kfp.local's records about tasks: a line when one starts, is reused, or fails."""
        match = _EXECUTING.search(plain)
        if match:
            self.task = match.group(1)
            self.recent.clear()
            self._tell(self.task)
            return
        match = _CACHE_HIT.search(plain)
        if match:
            self.reused.append(match.group(1))
            self._tell(f"{match.group(1)}: reused (done in an earlier attempt of this run)")
            return
        match = _FINISHED.search(plain)
        if match and match.group(2) == "FAILURE":
            task = match.group(1)
            lines = [line for line in self.recent if not _FINISHED.search(line)]
            self.failed[task] = error_of(lines)
            self.err.write(f"{task} failed: {self.failed[task]}\n")
            self.err.flush()
            self.task = None
        elif match:
            self.task = None

    def _tell(self, text: str) -> None:
        """A task's line: quiet mode's own (verbose shows kfp's record it comes from)."""
        if not self.verbose:
            self.out.write(text + "\n")
            self.out.flush()

    def close(self) -> None:
        self.log.close()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _LineStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` during a run: whole lines to ``sink``."""

    def __init__(self, sink: Callable[[str], None]):
        super().__init__()
        self._sink = sink
        self._partial = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._sink(line)
        return len(text)

    def flush(self) -> None:  # a partial line waits for its end
        pass

    def finish(self) -> None:
        if self._partial:
            self._sink(self._partial)
            self._partial = ""


@contextlib.contextmanager
def routed(console: Console) -> Iterator[Console]:
    """Send this process's stdout, stderr, log records and warnings through ``console`` for the block.

    kfp.local's ``local_logger_context`` replaces the root logger's handlers with its own on ``sys.stdout`` (this
    router) while a task runs, and restores what was there afterwards: ours, which also takes the records it logs
    outside that context (``orchestrator/task_executor.py``: "Task ... cache hit"; the orchestrators' skips).
    """
    stdout, stderr = sys.stdout, sys.stderr
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    sys.stdout, sys.stderr = _LineStream(console.line), _LineStream(console.line)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s", "%H:%M:%S"))
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield console
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = handlers
        root.setLevel(level)
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _LineStream):
                stream.finish()
        sys.stdout, sys.stderr = stdout, stderr
