"""The seed notebook, run as written: its code cells, verbatim, from the copy beside this file.

    python -m bench.notebook [--data-dir DIR]        # tfds's MNIST, as the notebook loads it
    python -m bench.notebook --npz mnist.npz         # no TensorFlow (GPU machines): the same arrays

``neural_network_with_tfds_data.md`` is the JAX docs' notebook (Apache 2.0,
copied unchanged). Its code cells run in order in one namespace, with one
change: the line ``data_dir = '/tmp/tfds'`` names the data dir given here. With
``--npz`` the cell that imports TensorFlow is replaced by the same arrays read
from the .npz, and ``tfds`` is a numpy stand-in that batches them in the same
order (``tfds.load(...).batch(n).prefetch(1)``, ``tfds.as_numpy``); every other
cell, the training loop included, still runs verbatim. No cell calls into
``mlp_core``. The notebook prints its own epoch times and accuracies; the last
line printed here is a JSON summary of them for ``bench.train_speed``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import resource
import sys
from pathlib import Path

SEED = Path(__file__).with_name("neural_network_with_tfds_data.md")
DATA_DIR_LINE = "data_dir = '/tmp/tfds'"
_CELL = re.compile(r"^```\{code-cell\} ipython3\n(?::[^\n]*\n)*\n?(.*?)^```", re.MULTILINE | re.DOTALL)


def code_cells(text: str | None = None) -> list[str]:
    """The notebook's code cells, in order (their ``:id:`` option lines left out)."""
    return _CELL.findall(SEED.read_text() if text is None else text)


class _NumpyBatches:
    """``tfds.load(name='mnist', split='train', as_supervised=True)`` over arrays: ``.batch(n).prefetch(k)``."""

    def __init__(self, images, labels, batch_size: int | None = None):
        self.images, self.labels, self.batch_size = images, labels, batch_size

    def batch(self, batch_size: int) -> "_NumpyBatches":
        return _NumpyBatches(self.images, self.labels, batch_size)

    def prefetch(self, _buffer: int) -> "_NumpyBatches":
        return self

    def __iter__(self):
        for start in range(0, len(self.labels), self.batch_size):
            yield self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]


class _NumpyTfds:
    """The two calls of ``tensorflow_datasets`` the training loop cell makes, over the .npz's train split."""

    def __init__(self, images, labels):
        self._train = _NumpyBatches(images, labels)

    def load(self, name: str, split: str, as_supervised: bool, data_dir: str):
        assert (name, split, as_supervised) == ("mnist", "train", True), (name, split, as_supervised)
        return self._train

    @staticmethod
    def as_numpy(dataset):
        return iter(dataset)


def _npz_data_cell(npz: Path) -> str:
    """Stands in for the TensorFlow cell: the same names, from the .npz (images as [N, 28, 28, 1] uint8)."""
    return f"""
import numpy as np
with np.load({str(npz)!r}, allow_pickle=False) as _npz:
    _arrays = {{k: _npz[k] for k in ("train_x", "train_y", "test_x", "test_y")}}
tfds = _NumpyTfds(_arrays["train_x"].reshape(-1, 28, 28, 1), _arrays["train_y"])
data_dir = None
num_labels = 10
h, w, c = 28, 28, 1
num_pixels = h * w * c
train_images = jnp.reshape(_arrays["train_x"], (len(_arrays["train_x"]), num_pixels))
train_labels = one_hot(_arrays["train_y"], num_labels)
test_images = jnp.reshape(_arrays["test_x"], (len(_arrays["test_x"]), num_pixels))
test_labels = one_hot(_arrays["test_y"], num_labels)
"""


def prepared_cells(data_dir: str | None, npz: Path | None) -> list[str]:
    """The cells to run: verbatim but for the data dir line (or, with ``npz``, the TensorFlow cell)."""
    cells = code_cells()
    tf_cells = [i for i, cell in enumerate(cells) if "import tensorflow_datasets as tfds" in cell]
    if len(tf_cells) != 1 or DATA_DIR_LINE not in cells[tf_cells[0]]:
        raise RuntimeError(f"{SEED.name}: expected one data-loading cell with {DATA_DIR_LINE!r}")
    if npz is not None:
        cells[tf_cells[0]] = _npz_data_cell(npz)
    elif data_dir is not None:
        cells[tf_cells[0]] = cells[tf_cells[0]].replace(DATA_DIR_LINE, f"data_dir = {data_dir!r}")
    return cells


def run(data_dir: str | None = None, npz: Path | None = None) -> dict:
    """Run the notebook; its output goes to stdout as it comes; returns its epoch times and accuracies."""
    namespace = {"__name__": "__seed_notebook__", "_NumpyTfds": _NumpyTfds}
    captured = io.StringIO()

    class _Tee(io.TextIOBase):
        def write(self, text):
            captured.write(text)
            return sys.__stdout__.write(text)

        def flush(self):
            sys.__stdout__.flush()

    with contextlib.redirect_stdout(_Tee()):
        for i, cell in enumerate(prepared_cells(data_dir, npz)):
            exec(compile(cell, f"<seed notebook cell {i}>", "exec"), namespace)  # noqa: S102 - the point of this file
    out = captured.getvalue()
    return {
        "epoch_seconds": [float(s) for s in re.findall(r"^Epoch \d+ in ([0-9.]+) sec$", out, re.MULTILINE)],
        "test_accuracies": [float(a) for a in re.findall(r"^Test set accuracy ([0-9.]+)$", out, re.MULTILINE)],
        "num_train": int(namespace["train_images"].shape[0]),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "data": "npz" if npz is not None else "tfds",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.notebook", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None,
                   help="TFDS data dir the notebook reads mnist from (default: the notebook's own, /tmp/tfds)")
    p.add_argument("--npz", type=Path, default=None, help=".npz with train_x, train_y, test_x, test_y: no TensorFlow")
    args = p.parse_args(argv)
    summary = run(args.data_dir, args.npz)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
