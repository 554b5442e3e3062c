"""The train step: a Dataset artifact in; a Model artifact (with its SavedModel), metrics and TensorBoard events out.

    python -m components.train --dataset DIR --model DIR [--metrics FILE] [--epochs 10 ...]

The step's parameters become one ``TrainConfig`` (``config_of``) that everything below takes; the network's input
and output widths come from the dataset's metadata. JAX, TensorFlow and the training library are imported where
they are used: the command line refuses bad flags before they load (4-10 s on 2 cores).
"""

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from artifacts import locations, storage
from artifacts import remote as remote_artifacts
from artifacts.outputs import (OutputConflictError, artifact_writer, check_apart, check_artifact_output, check_output_file,
                               check_outside_artifacts, write_json)
from components._cli import check_inputs, exit_on_error
from components._step import add_parameter_flags, descriptions
from mlp_core.config import PLACEMENTS, TrainConfig, parse_hidden_sizes
from mlp_core.distributed import ProcessGroup, detect, initialize
from mlp_core.errors import UserError
from mlp_core.metrics import final_metrics, hyperparameters
from platforms.kubeflow.trainer import train_as_trainer_job
from platforms.options import StepPolicy

if TYPE_CHECKING:
    from mlp_core.train import BatchSource

# On a cluster: peak RSS 1.33 GB on full MNIST; the GPU request goes here. Retried after a failure, each attempt
# resuming from the checkpoints beside its Model artifact's URI (pipeline_checkpoint_dir). Never cached: its cache
# key would hold the run id; the new_data step is what skips training when nothing is new (docs/design.md).
CLUSTER = StepPolicy("4", "8", "4Gi", "8Gi", accelerated=True, cacheable=False,
                     retry={"num_retries": 3, "backoff_duration": "60s", "backoff_factor": 2.0,
                            "backoff_max_duration": "1800s"})
# What the tune step chooses (best_hyperparameters), in place of these parameters.
TUNED = ("hidden_sizes", "step_size", "batch_size", "seed")


def train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    hidden_sizes: str = "512,512",
    step_size: float = 0.01,
    batch_size: int = 128,
    epochs: int = 10,
    seed: int = 0,
    shuffle: bool = True,
    placement: str = "auto",
    checkpoint_root: str = "",
    run_id: str = "",
    require_gpu: bool = False,
    trainer_job: str = "",
    best_hyperparameters: str = "",
):
    """Train the seed's MLP with JAX (components.train).

    Args:
        dataset: Dataset artifact folder (from components.ingest)
        model: Model artifact folder to write: new, empty, or a Model this program wrote (replaced only when the run
            succeeds)
        metrics: per-epoch metrics
        tensorboard: TensorBoard event files of the per-epoch curves (tensorboard --logdir)
        hidden_sizes: hidden layer widths, comma-separated
        step_size: SGD step size
        batch_size: examples per SGD step
        epochs: passes over the train split
        seed: PRNG seed for init and shuffling
        shuffle: shuffle each epoch on the device; false keeps the seed's order
        placement: auto, device (whole split on the device) or stream (tf.data batches); auto picks by size
        checkpoint_root: durable per-epoch checkpoints, gs://, s3:// or a folder, under checkpoints/<run_id>/train
            (default: beside the Model artifact in the object store, in a pipeline)
        run_id: the pipeline run id (the pipeline fills it in); a rerun of it resumes from its checkpoints
        require_gpu: fail at once unless JAX sees a GPU (the pipeline sets it when the step requests one)
        trainer_job: empty: train in this step's pod; else train as a Kubeflow Trainer TrainJob of N pods
            (JSON, platforms.kubeflow.trainer.job_spec; compile --target kfp --replicas N sets it)
        best_hyperparameters: the tune step's choice (JSON: step_size, seed, batch_size, hidden_sizes), which
            replaces those four parameters; empty: train with them as given
    """
    import os
    import sys
    import tempfile

    from artifacts import storage
    from artifacts.outputs import write_json
    from components.train import config_of, flags, pipeline_checkpoint_dir, train_on_dataset, tuned
    from mlp_core.distributed import detect
    from mlp_core.metrics import final_metrics, hyperparameters
    from mlp_core.tensorboard import trained_on, write_events

    if trainer_job:  # a Kubeflow Trainer TrainJob's pods read the Dataset by its URI and check the settings
        import json

        from platforms.kubeflow.trainer import train_as_trainer_job

        chosen = tuned(hidden_sizes, step_size, batch_size, seed, best_hyperparameters)
        history = train_as_trainer_job(json.loads(trainer_job), dataset.uri, model.path, model.uri,
                                       {"run_id": run_id}, flags(*chosen, epochs, shuffle, placement, checkpoint_root,
                                                                 run_id, require_gpu))
    config = config_of(hidden_sizes, step_size, batch_size, epochs, seed, shuffle, best_hyperparameters)
    if not trainer_job:
        checkpoint_dir = None  # kfp.local: the model URI is a local folder, and they go beside it
        if storage.is_remote(model.uri):  # durable and the same for every attempt; else in this pod only
            checkpoint_dir = (pipeline_checkpoint_dir(checkpoint_root, model.uri, run_id)
                              or tempfile.mkdtemp(prefix="train-checkpoints-"))
        history = train_on_dataset(dataset.path, model.path, config, placement=placement,
                                   checkpoint_dir=checkpoint_dir, checkpoint_root=checkpoint_root, run_id=run_id,
                                   require_gpu=require_gpu, model_uri=model.uri)
        if not detect(os.environ).is_primary:
            # Every replica of a multi-host job shares the step's output paths: only process 0 may let kfp's
            # executor write them; the others leave the process group and exit first.
            import jax

            jax.distributed.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    hyper = hyperparameters(config, placement)
    # The hyperparameters beside the results, so that the KFP UI's run comparison shows both.
    for name, value in {**final_metrics(history), **hyper}.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(name, value)
    metrics.metadata["hidden_sizes"] = config.hidden_sizes
    write_json(metrics.path, {"history": history, "hyperparameters": hyper})
    write_events(history, tensorboard.path, hyper, run_id=run_id, dataset=trained_on(model.path))
    model.metadata["framework"] = "jax"
    if best_hyperparameters not in ("", "{}"):  # evaluate's report says the tune step chose the configuration
        model.metadata["tuned"] = best_hyperparameters
    if run_id:  # evaluate's report names the run (the Model's metadata reaches the next step's input)
        model.metadata["run_id"] = run_id
    model.metadata["test_accuracy"] = history[-1]["test_accuracy"]


def component(base_image: str):
    """``train`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(train, base_image=base_image, install_kfp_package=False)


def tuned(hidden_sizes: str, step_size: float, batch_size: int, seed: int, best_hyperparameters: str = ""):
    """``(hidden_sizes, step_size, batch_size, seed)`` with the tune step's choice (its JSON) in place."""
    text = best_hyperparameters or "{}"
    try:
        best = json.loads(text)
    except ValueError:
        best = None
    if not isinstance(best, dict) or not set(best) >= (set(TUNED) if best else set()):
        raise UserError(f"best_hyperparameters must be the tune step's JSON object (with {', '.join(TUNED)}), "
                        f"got {text[:60]!r}", field="best_hyperparameters")
    return tuple(best[name] for name in TUNED) if best else (hidden_sizes, step_size, batch_size, seed)


def config_of(hidden_sizes: str, step_size: float, batch_size: int, epochs: int, seed: int, shuffle: bool,
              best_hyperparameters: str = "") -> TrainConfig:
    """The step's training parameters as one ``TrainConfig``, the tune step's choice in place (``tuned``)."""
    hidden_sizes, step_size, batch_size, seed = tuned(hidden_sizes, step_size, batch_size, seed, best_hyperparameters)
    inputs, *_, classes = TrainConfig.layer_sizes  # the seed's widths until for_data sets the data's
    return TrainConfig(layer_sizes=(inputs, *parse_hidden_sizes(hidden_sizes), classes), step_size=step_size,
                       batch_size=batch_size, epochs=epochs, seed=seed, shuffle=shuffle)


def flags(hidden_sizes: str, step_size: float, batch_size: int, seed: int, epochs: int, shuffle: bool,
          placement: str, checkpoint_root: str, run_id: str, require_gpu: bool) -> list[str]:
    """The train command line's flags for these settings (a TrainJob's pods run that command)."""
    return ["--hidden-sizes", str(hidden_sizes), "--step-size", str(step_size), "--batch-size", str(batch_size),
            "--epochs", str(epochs), "--seed", str(seed), "--shuffle" if shuffle else "--no-shuffle",
            "--placement", placement, "--checkpoint-root", checkpoint_root, "--run-id", run_id,
            "--require-gpu" if require_gpu else "--no-require-gpu"]


def train_on_dataset(dataset: "str | Path", model: "str | Path", config: TrainConfig = TrainConfig(), *,
                     metrics: "str | Path | None" = None, placement: str = "auto", checkpoint_dir: "str | None" = None,
                     checkpoint_root: str = "", run_id: str = "", require_gpu: bool = False,
                     model_uri: "str | None" = None, processes: "ProcessGroup | None" = None,
                     coordinator_timeout: int = 300, heartbeat_timeout: int = 100,
                     log: Callable[[str], None] = functools.partial(print, flush=True)) -> list[dict]:
    """Train ``config`` on ``dataset``'s train split (test accuracy per epoch); write ``model``; return the history.

    Checkpoints every epoch (a rerun resumes); of several ``processes``, process 0 alone writes.
    """
    import jax

    from mlp_core.checkpoint import Checkpoints, remove_empty_folders
    from mlp_core.data.artifact import dataset_identity, load_metadata
    from mlp_core.export import SAVED_MODEL_DIR, SERVING_VERSION, export_saved_model
    from mlp_core.memory import choose_placement
    from mlp_core.mesh import data_mesh, describe_mesh
    from mlp_core.model_io import save_model
    from mlp_core.train import batch_layout, fit

    group = processes or detect(os.environ)
    with local_artifacts(dataset, model, metrics, checkpoint_dir, checkpoint_root) as here:
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
        config = config.for_data(math.prod(metadata["image_shape"]), metadata["num_classes"])
        num_examples = metadata["splits"]["train"]["num_examples"]
        batch_layout(num_examples, config.batch_size)
        placement = choose_placement(num_examples * (config.layer_sizes[0] + 4), placement)
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
            f"batch {config.batch_size}, step {config.step_size}, {config.epochs} epoch(s)"
        )
        if group.num_processes > 1:
            log(group.describe())
        if mesh is not None:
            log(describe_mesh(mesh, num_examples, config.batch_size))
        log(f"checkpoints: {checkpoints.uri}" + ("" if group.is_primary else " (written by process 0)"))

        def on_epoch(params, m, history):
            log(
                f"epoch {m.epoch}/{config.epochs}: {m.seconds:.2f} s ({m.examples_per_second:,.0f} ex/s), "
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
                                 "hyperparameters": hyperparameters(config, placement)})
        here.upload()  # the model and metrics, where they were asked for; before this run's checkpoints go
        checkpoints.remove(location_is_ours=not checkpoint_dir and not derived)
        if derived and checkpoint_root and not storage.is_remote(derived):
            remove_empty_folders(derived, 2)  # <root>/checkpoints/<run id>/train and the run's folder, if left empty
        return history


def batch_source(dataset: "str | Path", metadata: dict, config: TrainConfig, placement: str, group: ProcessGroup,
                 mesh) -> "BatchSource":
    """Where the epochs' batches come from: streamed shards (``stream``), the split on this process's devices, or
    each process's share of every global batch."""
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
    """Object-store artifacts as local copies in a scratch folder, uploaded by ``upload``; local paths unchanged."""

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
    name = str(model_uri).rstrip("/").rpartition("/")[2]
    return storage.join(storage.parent(model_uri), f".{name}.checkpoints")


def pipeline_checkpoint_dir(checkpoint_root: str, model_uri: "str | None", run_id: str, log=print) -> "str | None":
    """A pipeline's checkpoints, the same for every attempt: ``<checkpoint_root>/checkpoints/<run_id>/train``, else
    beside an object-store Model URI, else None (why: docs/design.md, "Failure behaviour")."""
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




def check_process_flags(num_processes: int | None, process_id: int | None, coordinator_timeout: int,
                        heartbeat_timeout: int) -> None:
    """The process flags' own ranges, each named (None: not given); ``detect`` then checks them together."""
    for flag, value, least in (("--num-processes", num_processes, 1), ("--process-id", process_id, 0),
                               ("--coordinator-timeout", coordinator_timeout, 1),
                               ("--heartbeat-timeout", heartbeat_timeout, 1)):
        if value is not None and value < least:
            raise UserError(f"{flag} must be {least} or more, got {value}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.train",
        description="Train the JAX docs' MLP on a Dataset artifact; write a Model artifact and metrics. "
        "Defaults are the seed notebook's; --no-shuffle is the seed-faithful data order.",
    )
    texts = descriptions(train)
    p.add_argument("--dataset", required=True, help=texts["dataset"])
    p.add_argument("--model", required=True, help=texts["model"])
    p.add_argument("--metrics", default=None, help="JSON file for per-epoch metrics")
    p.add_argument("--tensorboard", default=None, help=texts["tensorboard"] + ": this folder (new or empty)")
    add_parameter_flags(p, train, choices={"placement": PLACEMENTS})
    p.add_argument("--checkpoint-dir", default=None,
                   help="this exact folder (or gs://, s3://) for the checkpoints instead of one under --checkpoint-root "
                   "(default: .<model>.checkpoints beside --model when no root is given)")
    group = p.add_argument_group(
        "more than one process", "train as one of several processes (hosts) over all their devices; without these, "
        "Vertex AI's CLUSTER_SPEC or Kubeflow Trainer's variables say, else one process")
    group.add_argument("--coordinator", default="", help="host:port of process 0's coordinator")
    group.add_argument("--num-processes", type=int, help="how many processes train together")
    group.add_argument("--process-id", type=int, help="this process: 0 .. num-processes - 1")
    group.add_argument("--coordinator-timeout", type=int, default=300,
                       help="seconds to wait for the coordinator and the other processes (default: %(default)s)")
    group.add_argument("--heartbeat-timeout", type=int, default=100,
                       help="seconds after which a silent process (killed, preempted) ends the others (default: %(default)s)")
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    locations.check_flags({"--dataset": args.dataset, "--model": args.model, "--metrics": args.metrics,
                           "--tensorboard": args.tensorboard, "--checkpoint-dir": args.checkpoint_dir,
                           "--checkpoint-root": args.checkpoint_root}, local=("--tensorboard",))
    if args.run_id:
        locations.check_segment(args.run_id, "--run-id", "run id")
    check_inputs({"--dataset": args.dataset})
    config = config_of(args.hidden_sizes, args.step_size, args.batch_size, args.epochs, args.seed, args.shuffle,
                       args.best_hyperparameters)
    # Before anything else (the process group included): outputs apart from the input and from each other.
    check_apart({"--dataset": args.dataset}, {"--model": args.model, "--metrics": args.metrics,
                                              "--checkpoint-dir": args.checkpoint_dir, "--tensorboard": args.tensorboard})
    check_process_flags(args.num_processes, args.process_id, args.coordinator_timeout, args.heartbeat_timeout)
    processes = detect(os.environ, args.coordinator, 0 if args.num_processes is None else args.num_processes,
                       -1 if args.process_id is None else args.process_id)
    if args.tensorboard and processes.is_primary:
        check_artifact_output(args.tensorboard, "tensorboard")  # before any work
    if args.trainer_job:
        history = train_as_trainer_job(json.loads(args.trainer_job), str(args.dataset), args.model, str(args.model),
                                       {"run_id": args.run_id},
                                       flags(config.hidden_sizes, config.step_size, config.batch_size, config.seed,
                                             config.epochs, config.shuffle, args.placement, args.checkpoint_root,
                                             args.run_id, args.require_gpu))
    else:
        history = train_on_dataset(args.dataset, args.model, config, metrics=args.metrics, placement=args.placement,
                                   checkpoint_dir=args.checkpoint_dir, checkpoint_root=args.checkpoint_root,
                                   run_id=args.run_id, require_gpu=args.require_gpu, processes=processes,
                                   coordinator_timeout=args.coordinator_timeout,
                                   heartbeat_timeout=args.heartbeat_timeout)
    if not processes.is_primary:
        print(f"process {processes.process_id} done (process 0 writes {args.model})")
        return 0
    if args.tensorboard:
        from mlp_core.tensorboard import trained_on, write_events  # not at the top: test_layout's import-chain limit

        write_events(history, args.tensorboard, hyperparameters(config, args.placement), run_id=args.run_id,
                     dataset=trained_on(args.model))
        print(f"wrote {args.tensorboard} (tensorboard --logdir {args.tensorboard})")
    print(f"wrote {args.model} (test accuracy {history[-1]['test_accuracy']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
