"""The train step's per-epoch curves and its hyperparameters as TensorBoard event files, and reading them back.

Events are written with ``tf.summary`` into a local temp folder, then copied into the artifact (marker last): the
event writer appends as it goes, which an object store mount does not do well. The hyperparameters go in as a
TEXT table and as an HParams session (docs/design.md, "TensorBoard's HParams").
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path

from artifacts import storage
from artifacts.outputs import artifact_writer
from mlp_core.model_io import DATASET_FILE
from mlp_core.report import data_fingerprint

# TensorFlow (4 s to import) loads inside the functions that write or read events: the train step imports this
# module before it trains, and MNIST's training reads its shards without TensorFlow.

# history key -> TensorBoard tag (grouped by the part before the slash)
SCALARS = {
    "loss": "train/loss",
    "train_accuracy": "train/accuracy",
    "test_accuracy": "test/accuracy",
    "test_loss": "test/loss",
    "seconds": "speed/epoch_seconds",
    "examples_per_second": "speed/examples_per_second",
}


def session_hparams(hyperparameters: "dict | None", dataset: "dict | None" = None) -> dict[str, "int | float | str"]:
    """What the HParams dashboard shows of a run: its hyperparameters (no ``param_`` prefix) and its data."""
    values = {name.removeprefix("param_"): value for name, value in (hyperparameters or {}).items()}
    if dataset:
        values["dataset"] = f"{dataset['name']} {dataset['version']}"
        values["data_fingerprint"] = data_fingerprint(dataset["shards"])[:12]
    return values


def trained_on(model: "str | Path") -> dict:
    """The Model artifact's ``dataset.json`` at ``model`` (a folder, ``gs://`` or ``s3://``): the data it was trained on."""
    return json.loads(storage.read_bytes(storage.join(str(model), DATASET_FILE)))


def write_events(history: list[dict], folder: "str | Path", hyperparameters: "dict | None" = None, *,
                 run_id: str = "", dataset: "dict | None" = None) -> list[str]:
    """Write one scalar per ``SCALARS`` key and epoch into ``folder``, and the hyperparameters; returns the files."""
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import summary as hparams_v1
    from tensorboard.plugins.hparams import summary_v2 as hparams_summary

    from mlp_core.data.tf import tf  # never takes a GPU from JAX

    scratch = Path(tempfile.mkdtemp(prefix="tensorboard-"))
    try:
        writer = tf.summary.create_file_writer(str(scratch))
        with writer.as_default():
            if hyperparameters:
                text = "\n".join(f"| {k} | {v} |" for k, v in sorted(hyperparameters.items()))
                tf.summary.text("hyperparameters", "| parameter | value |\n|---|---|\n" + text, step=0)
                # a trial id of its own (the run id, else a random one): two runs of the same settings stay two rows
                hparams_summary.hparams(session_hparams(hyperparameters, dataset), trial_id=run_id or uuid.uuid4().hex)
                # The run is done (written after training): its status, which the dashboard filters on.
                ended = hparams_v1.session_end_pb(api_pb2.STATUS_SUCCESS)
                tf.summary.experimental.write_raw_pb(ended.SerializeToString(), step=0)
            for entry in history:
                for key, tag in SCALARS.items():
                    if entry.get(key) is not None:
                        tf.summary.scalar(tag, float(entry[key]), step=int(entry["epoch"]))
        writer.close()
        return copy_events(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # our own temp folder


def copy_events(scratch: Path, folder: "str | Path") -> list[str]:
    """Every event file under ``scratch`` into the artifact ``folder``, file by file, marker last; returns the names."""
    names = sorted(p.relative_to(scratch).as_posix() for p in scratch.rglob("*") if p.is_file())
    with artifact_writer(folder, "tensorboard") as out:
        for name in names:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(scratch / name, out / name)
    return names


def read_scalars(folder: "str | Path") -> dict[str, list[tuple[int, float]]]:
    """Every scalar in ``folder``'s event files, as TensorBoard reads them: tag -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    from mlp_core.data.tf import tf  # never takes a GPU from JAX

    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"] if tag in SCALARS.values()}


def read_hparams(logdir: "str | Path") -> dict[str, dict]:
    """What the HParams dashboard lists for ``logdir`` (run -> trial, hparams, status, metrics), by its own handler."""
    from google.protobuf import json_format
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    tb_context = base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer,
                                       data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir)))
    # As the dashboard asks (webfiles.zip, index.js fetchSessionGroups): every status, all groups.
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=1_000_000, include_metrics=True,
        allowed_statuses=[api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_UNKNOWN])
    response = list_session_groups.Handler(context.RequestContext(), backend_context.Context(tb_context), "",
                                           request).run()
    runs = {}
    for group in response.session_groups:
        hparams = {name: json_format.MessageToDict(value) for name, value in group.hparams.items()}
        for session in group.sessions:
            runs[session.name] = {"trial": group.name, "hparams": hparams, "status": api_pb2.Status.Name(session.status),
                                  "metrics": {m.name.tag: m.value for m in session.metric_values}}
    return runs
