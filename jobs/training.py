"""The train step's work: a Dataset artifact in, a Model artifact (and its SavedModel) out.

``train_on_dataset`` takes the artifacts at local paths or object-store URIs
(``local_artifacts`` makes them local and uploads the outputs: where the files
are, not how to train). Then one path: join the processes, read the metadata,
choose where each epoch's batches come from (``batch_source``: the placement and
the processes decide), run the one training loop ``mlp_core.train.fit`` (it
resumes from this run's newest checkpoint and writes one every epoch), write the
model (committed by its marker) and remove this run's checkpoints. The input and
output widths of the network come from the dataset's metadata (image shape,
number of classes); only the hidden sizes are chosen.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mlp_core.config import TrainConfig, parse_layer_sizes
from mlp_core.errors import UserError
from mlp_core.distributed import ProcessGroup, detect, initialize
from artifacts.outputs import OutputConflictError, check_apart, check_output_file, check_outside_artifacts, write_json

if TYPE_CHECKING:
    from mlp_core.train import BatchSource


def build_config(metadata: dict, hidden_sizes: str, **hyper) -> TrainConfig:
    """The TrainConfig for ``metadata``'s data: input = pixels per image, output = classes."""
    hidden = parse_layer_sizes(hidden_sizes) if hidden_sizes.strip() else ()
    sizes = (math.prod(metadata["image_shape"]), *hidden, metadata["num_classes"])
    return TrainConfig(layer_sizes=sizes, **hyper)


def train_on_dataset(
    dataset: "str | Path",
    model: "str | Path",
    *,
    metrics: "str | Path | None",
    hidden_sizes: str,
    step_size: float,
    batch_size: int,
    epochs: int,
    seed: int,
    shuffle: bool,
    placement: str,
    checkpoint_dir: "str | None",
    checkpoint_root: str,
    run_id: str,
    require_gpu: bool,
    model_uri: "str | None" = None,
    processes: "ProcessGroup | None" = None,
    coordinator_timeout: int = 300,
    heartbeat_timeout: int = 100,
    log: Callable[[str], None] = functools.partial(print, flush=True),
) -> list[dict]:
    """Train on ``dataset``'s train split (test accuracy reported per epoch); returns the history.

    The arguments are the train step's parameters (``components.train.train``
    declares them and their defaults; none is defaulted here). ``placement``:
    ``device`` keeps the whole split on the device (one compiled call per epoch),
    ``stream`` feeds batches from tf.data; ``auto`` picks by size. A checkpoint is
    written after every epoch to ``checkpoint_dir`` (a folder, ``gs://`` or ``s3://``;
    when None: ``pipeline_checkpoint_dir`` of ``checkpoint_root``, ``run_id`` and
    ``model_uri`` (the Model artifact's URI, in a pipeline step), else
    ``.<model>.checkpoints`` beside ``model``); a rerun of the same run (config,
    data, placement, devices) resumes from the newest complete one, and this run's
    checkpoint files are deleted once the model is written. ``require_gpu``: fail
    unless JAX sees a GPU (a step that requested one). ``processes``: this
    process's place among several (default: what the environment says,
    ``mlp_core.distributed.detect``); with more than one, all train together over
    every process's devices and process 0 alone writes checkpoints, model and metrics.

    ``dataset``, ``model`` and ``metrics`` may be object-store URIs (``gs://``, ``s3://``, Kubeflow's
    ``minio://``: the pods of a Kubeflow Trainer job have no kfp launcher to move artifacts for them): the
    dataset is downloaded and verified first, the model trained into a local
    folder and uploaded with its marker last (``local_artifacts``, ``artifacts.remote``).
    """
    hyper = dict(hidden_sizes=hidden_sizes, step_size=step_size, batch_size=batch_size, epochs=epochs, seed=seed,
                 shuffle=shuffle, placement=placement)
    group = processes or detect(os.environ)
    with local_artifacts(dataset, model, metrics, checkpoint_dir, checkpoint_root) as here:
        return _train(here, group, hyper, checkpoint_root=checkpoint_root, run_id=run_id, require_gpu=require_gpu,
                      model_uri=model_uri, coordinator_timeout=coordinator_timeout,
                      heartbeat_timeout=heartbeat_timeout, log=log)


def _train(here: "LocalArtifacts", group: ProcessGroup, hyper: dict, *, checkpoint_root: str, run_id: str,
           require_gpu: bool, model_uri: "str | None", coordinator_timeout: int, heartbeat_timeout: int,
           log: Callable[[str], None]) -> list[dict]:
    """``train_on_dataset`` on local artifacts: join the processes, choose the batch source, ``train.fit``, write."""
    import jax

    from artifacts import storage
    from mlp_core.checkpoint import Checkpoints, remove_empty_folders
    from mlp_core.data.artifact import dataset_identity, load_metadata
    from mlp_core.export import SAVED_MODEL_DIR, SERVING_VERSION, export_saved_model
    from mlp_core.memory import choose_placement
    from mlp_core.mesh import data_mesh, describe_mesh
    from mlp_core.model_io import save_model
    from artifacts.outputs import artifact_writer, check_artifact_output
    from mlp_core.train import batch_layout, fit

    dataset, model, metrics, checkpoint_dir = here.dataset, here.model, here.metrics, here.checkpoint_dir
    derived = None if checkpoint_dir else pipeline_checkpoint_dir(checkpoint_root, model_uri, run_id, log)
    location = checkpoint_dir or derived or str(default_checkpoint_dir(model))
    check_apart({"--dataset": dataset}, {"--model": model, "--metrics": metrics, "--checkpoint-dir": location})
    check_outside_artifacts(location, "--checkpoint-dir")
    initialize(group, coordinator_timeout, heartbeat_timeout)  # before anything asks JAX for its devices
    if require_gpu:
        check_gpu()
    check_artifact_output(model, "model")
    if metrics is not None:
        check_output_file(metrics)
    metadata = load_metadata(dataset)
    config = build_config(metadata, hyper["hidden_sizes"], step_size=hyper["step_size"],
                          batch_size=hyper["batch_size"], num_epochs=hyper["epochs"], seed=hyper["seed"],
                          shuffle=hyper["shuffle"])
    num_examples = metadata["splits"]["train"]["num_examples"]
    batch_layout(num_examples, config.batch_size)
    placement = choose_placement(num_examples * (config.layer_sizes[0] + 4), hyper["placement"])
    identity = dataset_identity(metadata)
    if group.num_processes > 1 and placement != "device":
        raise UserError(f"training as {group.num_processes} processes keeps the data on the devices: "
                          f"placement {placement} is not possible (use device or auto)")
    mesh = data_mesh(jax.devices()) if placement == "device" else None
    # Everything that changes the numbers: the shuffled order depends on the placement,
    # float sums on how many devices share a batch.
    run = {"config": config.to_dict(), "dataset": identity, "placement": placement,
           "devices": {"platform": jax.default_backend(), "count": jax.device_count() if mesh is not None else 1}}
    checkpoints = Checkpoints(location, run)
    log(
        f"training {'-'.join(map(str, config.layer_sizes))} on {num_examples} examples "
        f"({'shuffled' if config.shuffle else 'seed order'}, data {'on the device' if placement == 'device' else 'streamed'}), "
        f"batch {config.batch_size}, step {config.step_size}, {config.num_epochs} epoch(s)"
    )
    if group.num_processes > 1:
        log(group.describe())
    if mesh is not None:
        log(describe_mesh(mesh, num_examples, config.batch_size))
    log(f"checkpoints: {checkpoints.uri}" + ("" if group.is_primary else " (written by process 0)"))

    def on_epoch(params, m, history):
        log(
            f"epoch {m.epoch}/{config.num_epochs}: {m.seconds:.2f} s ({m.examples_per_second:,.0f} ex/s), "
            f"loss {m.loss:.4f}, train accuracy {m.train_accuracy:.4f}, test accuracy {m.test_accuracy:.4f}"
        )

    source = batch_source(dataset, metadata, config, placement, group, mesh)
    params, history = fit(config, source, checkpoints=checkpoints, on_epoch=on_epoch, log=log)
    history = [m.to_dict() for m in history]
    if not group.is_primary:
        return history
    with artifact_writer(model, "model") as folder:
        save_model(folder, params, config, identity, history)
        export_saved_model(params, metadata["image_shape"], folder / SAVED_MODEL_DIR / SERVING_VERSION,
                           class_names=metadata["class_names"])
    if metrics is not None:
        write_json(metrics, {"history": history, "final": final_metrics(history),
                             "hyperparameters": hyperparameters(hyper)})
    here.upload()  # the model and metrics, where they were asked for; before this run's checkpoints go
    checkpoints.remove(location_is_ours=not checkpoint_dir and not derived)
    if derived and checkpoint_root and not storage.is_remote(derived):
        remove_empty_folders(derived, 2)  # <root>/checkpoints/<run id>/train and the run's folder, if left empty
    return history


def batch_source(dataset: "str | Path", metadata: dict, config: TrainConfig, placement: str, group: ProcessGroup,
                 mesh) -> "BatchSource":
    """Where the epochs' batches come from: the placement and the processes choose, the training loop is one.

    ``stream``: tf.data batches of the verified shards, prefetched while the device
    computes (``train.BatchStream``); else the whole split, read once: on this
    process's devices (``train.SplitOnDevice``) or, of several processes, each one's
    share of every global batch (``multiprocess.ProcessShare``).
    """
    from mlp_core.data.artifact import read_split

    if placement == "stream":
        from mlp_core.data.artifact import verify_shards
        from mlp_core.data.records import read_shards, record_dataset
        from mlp_core.train import BatchStream

        shape = metadata["image_shape"]
        shards = {split: verify_shards(dataset, metadata, split) for split in ("train", "test")}
        for path in shards["train"] + shards["test"]:
            # Framing, CRCs and records checked once, a shard at a time: a damaged length field that matches its
            # sha256 (a crafted artifact) would crash TensorFlow's record reader, not raise.
            read_shards([path], shape)

        def read(split: str, batch_size: int, shuffle_epoch: "int | None"):
            ds = record_dataset(shards[split], shape, batch_size=batch_size, shuffle_seed=shuffle_epoch,
                                seed=config.seed)
            return ds.as_numpy_iterator()

        return BatchStream(read, metadata["splits"]["train"]["num_examples"])
    train_images, train_labels = read_split(dataset, "train", metadata)
    test_images, test_labels = read_split(dataset, "test", metadata)
    if group.num_processes > 1:
        from mlp_core.multiprocess import ProcessShare

        return ProcessShare(train_images, train_labels, test_images, test_labels, mesh=mesh)
    from mlp_core.train import SplitOnDevice

    return SplitOnDevice(train_images, train_labels, test_images, test_labels, mesh=mesh)


class LocalArtifacts(NamedTuple):
    """The train step's artifacts as local paths, and how to put the outputs where they were asked for."""

    dataset: "str | Path"
    model: "str | Path"
    metrics: "str | Path | None"
    checkpoint_dir: "str | None"
    upload: Callable[[], None]


@contextlib.contextmanager
def local_artifacts(dataset: "str | Path", model: "str | Path", metrics: "str | Path | None",
                    checkpoint_dir: "str | None", checkpoint_root: str) -> Iterator[LocalArtifacts]:
    """Where the files are, not how to train: object-store artifacts as local copies in, uploads out.

    Local paths pass through unchanged (``upload`` does nothing). Any of ``dataset``,
    ``model``, ``metrics`` at an object-store URI: the model's URI is checked first
    (``remote_artifacts.check_upload``), the dataset downloaded and verified into a
    scratch folder, the model and metrics written locally and uploaded by ``upload``
    (the model's marker last); the scratch folder is removed afterwards. Checkpoints
    then default to ``.<name>.checkpoints`` beside the model's URI (durable, like a
    local run's beside its folder).
    """
    from artifacts import remote as remote_artifacts, storage

    if not any(v is not None and storage.is_remote(str(v)) for v in (dataset, model, metrics)):
        yield LocalArtifacts(dataset, model, metrics, checkpoint_dir, lambda: None)
        return
    dataset, model, metrics = str(dataset), str(model), None if metrics is None else str(metrics)
    if storage.is_remote(model):
        remote_artifacts.check_upload(model, "model")  # before any work
    if metrics is not None and storage.is_remote(metrics) and storage.exists(metrics):
        raise OutputConflictError(f"{metrics} exists; the metrics go to a new object")
    if checkpoint_dir is None and not checkpoint_root and storage.is_remote(model):
        checkpoint_dir = beside(model)  # durable, beside the model, like a local run's
    scratch = Path(tempfile.mkdtemp(prefix="train-"))
    try:
        local_dataset = (remote_artifacts.download(dataset, "dataset", scratch / "dataset")
                         if storage.is_remote(dataset) else dataset)
        local_model = scratch / "model" if storage.is_remote(model) else model
        local_metrics = (scratch / "metrics.json" if metrics is not None and storage.is_remote(metrics) else metrics)

        def upload():  # process 0, after the model is written and before its checkpoints go
            if local_model != model:
                remote_artifacts.upload(local_model, model, "model")
            if local_metrics != metrics:
                storage.write_bytes(metrics, Path(local_metrics).read_bytes())

        yield LocalArtifacts(local_dataset, local_model, local_metrics, checkpoint_dir, upload)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # our own temp folder


def check_gpu() -> None:
    """Fail with one line unless JAX runs on a GPU (the step asked for one: do not train on the CPU unnoticed)."""
    import jax

    backend = jax.default_backend()
    if backend != "gpu":
        devices = ", ".join(sorted({d.platform for d in jax.devices()}))
        raise UserError(
            f"this step requested a GPU but JAX sees only {devices}: the image is the CPU variant "
            "(build it with --build-arg ACCELERATOR=cuda) or the node has no GPU driver"
        )


def default_checkpoint_dir(model: "str | Path") -> Path:
    """Beside the model, hidden: nothing a cache or a reader could take for the model itself."""
    model = Path(model)
    return model.parent / f".{model.name}.checkpoints"


def beside(model_uri: str) -> str:
    """``.<name>.checkpoints`` beside the object-store URI ``model_uri`` (same bucket, same prefix)."""
    from artifacts import storage

    name = str(model_uri).rstrip("/").rpartition("/")[2]
    return storage.join(storage.parent(model_uri), f".{name}.checkpoints")


def pipeline_checkpoint_dir(checkpoint_root: str, model_uri: "str | None", run_id: str, log=print) -> "str | None":
    """Where a pipeline's train step keeps checkpoints: durable, and the same for every attempt of the task.

    Only what the backend really provides is used (the Kubeflow backend never fills
    in ``{{$.pipeline_root}}``: ``backend/src/v2/driver/resolve.go`` substitutes only
    the job and task names, ids and times, each as a whole value):

    - ``checkpoint_root`` (a pipeline parameter the user sets), with the run id
      (``{{$.pipeline_job_uuid}}``, substituted): ``<root>/checkpoints/<run_id>/train``;
    - else the Model artifact's own URI, when it is in an object store:
      ``.model.checkpoints`` beside it. On Kubeflow that URI is
      ``<pipeline root>/<pipeline>/<run id>/<task>/<uuid>/model`` (``driver/driver.go``
      ``provisionOutputs``, ``metadata/client.go`` ``GenerateOutputURI``); the driver
      writes it into the executor input once per task, and Argo's retry re-runs only
      the executor pod with that same input (``compiler/argocompiler/container.go``:
      ``retryStrategy`` on ``system-container-impl``), so every retried attempt gets
      the same URI and finds the checkpoints of the attempts before it;
    - else None (kfp.local: the model URI is a local folder, and the caller keeps
      them beside it).
    """
    from artifacts import locations, storage

    if checkpoint_root:
        if "{{" in run_id or "{{" in checkpoint_root:
            log(f"warning: a placeholder was not substituted ({checkpoint_root!r}, {run_id!r}); "
                "checkpoint_root is not used")
        elif run_id:
            locations.check_location(checkpoint_root, "--checkpoint-root")
            locations.check_segment(run_id, "run_id", "run id")  # a folder under the root: never ../ or absolute
            return locations.join(checkpoint_root, "checkpoints", run_id, "train", flag="--checkpoint-root")
        else:
            log("warning: checkpoint_root is set but no run id is given; it is not used")
    if model_uri and storage.is_remote(model_uri):
        try:
            return beside(model_uri)
        except UserError as e:
            log(f"warning: checkpoints cannot be written beside the model at {model_uri} ({e}); they stay in this "
                "pod, so a retry starts from epoch 1: set the pipeline parameter checkpoint_root")
    return None


def final_metrics(history: list[dict]) -> dict[str, float]:
    last = history[-1]
    return {
        "final_loss": last["loss"],
        "final_train_accuracy": last["train_accuracy"],
        "final_test_accuracy": last["test_accuracy"],
        "median_epoch_seconds": sorted(m["seconds"] for m in history)[len(history) // 2],
        "examples_per_second": last["examples_per_second"],
    }


def hyperparameters(params: dict) -> dict[str, "int | float | str"]:
    """What sets the numbers of a run, from the step's parameters, named for side-by-side run comparison."""
    names = ("epochs", "batch_size", "step_size", "seed", "shuffle", "hidden_sizes", "placement")
    return {f"param_{name}": (int(params[name]) if isinstance(params[name], bool) else params[name])
            for name in names if name in params}
