"""The train step's per-epoch curves as TensorBoard event files.

Written with ``tf.summary`` (TensorFlow's summary API; its writer comes from the
``tensorboard`` package) from the step's history, once training is done, into
a folder of their own: ``tensorboard --logdir <folder>`` shows them. The events
are written to a local temp folder first and then copied, file by file, into
the output (``mlp_core.outputs.artifact_writer``: marker last), because the
event writer appends to its file as it goes, which an object store mount
(Cloud Storage FUSE) does not do well.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

# history key -> TensorBoard tag (grouped by the part before the slash)
SCALARS = {
    "loss": "train/loss",
    "train_accuracy": "train/accuracy",
    "test_accuracy": "test/accuracy",
    "test_loss": "test/loss",
    "seconds": "speed/epoch_seconds",
    "examples_per_second": "speed/examples_per_second",
}


def write_events(history: list[dict], folder: "str | Path", hyperparameters: "dict | None" = None) -> list[str]:
    """Write one scalar per ``SCALARS`` key and epoch (step = epoch) into ``folder``; returns the files written."""
    from mlp_core.data.tf import tf  # never takes a GPU from JAX

    from mlp_core.outputs import artifact_writer

    scratch = Path(tempfile.mkdtemp(prefix="tensorboard-"))
    try:
        writer = tf.summary.create_file_writer(str(scratch))
        with writer.as_default():
            if hyperparameters:
                text = "\n".join(f"| {k} | {v} |" for k, v in sorted(hyperparameters.items()))
                tf.summary.text("hyperparameters", "| parameter | value |\n|---|---|\n" + text, step=0)
            for entry in history:
                for key, tag in SCALARS.items():
                    if entry.get(key) is not None:
                        tf.summary.scalar(tag, float(entry[key]), step=int(entry["epoch"]))
        writer.close()
        names = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*") if p.is_file())
        with artifact_writer(folder, "tensorboard") as out:
            for name in names:
                (out / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(scratch / name, out / name)
        return names
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # our own temp folder


def read_scalars(folder: "str | Path") -> dict[str, list[tuple[int, float]]]:
    """Every scalar in ``folder``'s event files, as TensorBoard reads them: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    from mlp_core.data.tf import tf  # never takes a GPU from JAX

    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"] if tag in SCALARS.values()}
