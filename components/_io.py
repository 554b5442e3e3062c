"""Single-file outputs (metrics, reports) written whole: a temp file, then a file rename.

Multi-file artifacts (a Dataset, a Model) are committed by a marker file instead:
``mlp_core.outputs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from mlp_core.outputs import check_writable_parent


def check_output_file(path: "str | Path") -> None:
    """Fail now, before any work, if ``path`` cannot become an output file."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output path is a folder, expected a file: {path}")
    check_writable_parent(path)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    check_output_file(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2, allow_nan=False) + "\n")  # strict JSON: a NaN is a bug, not a value
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
