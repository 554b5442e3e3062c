"""Train: a Dataset artifact -> a Model artifact and per-epoch metrics.

    python -m components.train --dataset DIR --model DIR --metrics FILE [--epochs 10 ...]

The input and output widths of the network come from the dataset's metadata
(image shape, number of classes); only the hidden sizes are ours to choose.
"""

import argparse
import functools
import sys
from pathlib import Path

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from platforms.options import StepPolicy
from components._cli import check_inputs, exit_on_error
from components._step import add_parameter_flags, argv, bind, defaults, descriptions, values
from mlp_core.config import PLACEMENTS, TrainConfig
from mlp_core.errors import UserError

DEFAULT = TrainConfig()
# On a cluster: peak RSS 1.33 GB on full MNIST; the GPU request goes here. Retried after a failure (exit code not 0),
# each attempt resuming from the checkpoints beside its Model artifact's URI (the same URI on every attempt:
# training_job.pipeline_checkpoint_dir). On Kubeflow a pod lost with its node is not retried (Argo's default
# retryPolicy OnFailure; the kfp compiler sets no other: docs/design.md "Failure behaviour").
# Never cached: its cache key would hold the run id (a new one every run: backend/src/v2/cacheutils/cache.go), so a
# hit could never happen across runs; the new_data step is what skips training when nothing is new.
CLUSTER = StepPolicy("4", "8", "4Gi", "8Gi", accelerated=True, cacheable=False,
                     retry={"num_retries": 3, "backoff_duration": "60s", "backoff_factor": 2.0,
                            "backoff_max_duration": "1800s"})
DEFAULT_HIDDEN = ",".join(str(s) for s in DEFAULT.layer_sizes[1:-1])


def train_model(dataset: "str | Path", model: "str | Path", metrics: "str | Path | None" = None,
                checkpoint_dir: "str | None" = None, model_uri: "str | None" = None, processes=None, coordinator_timeout: int = 300,
                heartbeat_timeout: int = 100, log=functools.partial(print, flush=True), **params) -> list[dict]:
    """The train step on artifact paths; ``params`` are the step's parameters (``train`` declares their defaults).

    ``model_uri``: the Model artifact's URI in a pipeline step (its checkpoints go beside it:
    ``jobs.training.pipeline_checkpoint_dir``). ``processes``: a ``mlp_core.distributed.ProcessGroup``;
    default: what the environment says (Vertex AI's CLUSTER_SPEC, Kubeflow Trainer's variables), else one process.
    With ``trainer_job`` (set at compile time by ``--target kfp --replicas N``), the training runs as a Kubeflow
    Trainer TrainJob instead (``platforms.kubeflow.trainer``; ``dataset`` is then the Dataset artifact's object-store URI).
    """
    from jobs.training import train_on_dataset

    given = with_best(bind(train, params))
    trainer_job = given.pop("trainer_job")
    if trainer_job:
        import json

        from platforms.kubeflow.trainer import train_as_trainer_job

        return train_as_trainer_job(json.loads(trainer_job), str(dataset), model, str(model_uri), given,
                                    argv(train, given), log=log)
    return train_on_dataset(dataset, model, metrics=metrics, checkpoint_dir=checkpoint_dir, model_uri=model_uri,
                            processes=processes,
                            coordinator_timeout=coordinator_timeout, heartbeat_timeout=heartbeat_timeout, log=log,
                            **given)


def check_training(params: dict) -> None:
    """The training settings in ``params`` (a step's parameters) checked as ``TrainConfig`` checks them, before any
    data is read: the input and output widths are the default's, the data's come later."""
    from jobs.training import build_config

    sizes = DEFAULT.layer_sizes
    build_config({"image_shape": [sizes[0]], "num_classes": sizes[-1]}, params["hidden_sizes"],
                 step_size=params["step_size"], batch_size=params["batch_size"], num_epochs=params["epochs"],
                 seed=params["seed"], shuffle=params["shuffle"])


TUNED = ("step_size", "seed", "batch_size", "hidden_sizes")


def with_best(params: dict) -> dict:
    """``params`` with the tune step's choice (``best_hyperparameters``, its JSON; empty: as given) in place."""
    import json

    params = dict(params)
    text = params.pop("best_hyperparameters", "") or "{}"
    try:
        best = json.loads(text)
    except ValueError:
        best = None
    if not isinstance(best, dict) or not set(best) >= (set(TUNED) if best else set()):
        raise UserError(f"best_hyperparameters must be the tune step's JSON object (with {', '.join(TUNED)}), "
                          f"got {text[:60]!r}", field="best_hyperparameters")
    params.update({name: best[name] for name in TUNED if name in best})
    return params


# Parameters the step itself handles (train_model), not its library function: where it runs, and tuning's choice.
WHERE = ("trainer_job", "best_hyperparameters")


@defaults(
    hidden_sizes=DEFAULT_HIDDEN,
    step_size=DEFAULT.step_size,
    batch_size=DEFAULT.batch_size,
    epochs=DEFAULT.num_epochs,
    seed=DEFAULT.seed,
    shuffle=DEFAULT.shuffle,
    placement=PLACEMENTS[0],
    checkpoint_root="",
    run_id="",
    require_gpu=False,
    trainer_job="",
    best_hyperparameters="",
)
def train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    hidden_sizes: str,
    step_size: float,
    batch_size: int,
    epochs: int,
    seed: int,
    shuffle: bool,
    placement: str,
    checkpoint_root: str,
    run_id: str,
    require_gpu: bool,
    trainer_job: str,
    best_hyperparameters: str,
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

    from components.train import train_model, with_best
    from mlp_core.distributed import detect
    from artifacts.outputs import write_json
    from mlp_core.tensorboard import trained_on, write_events
    from artifacts import storage
    from jobs.training import final_metrics, hyperparameters, pipeline_checkpoint_dir

    params = dict(hidden_sizes=hidden_sizes, step_size=step_size, batch_size=batch_size, epochs=epochs, seed=seed,
                  shuffle=shuffle, placement=placement, checkpoint_root=checkpoint_root, run_id=run_id,
                  require_gpu=require_gpu, trainer_job=trainer_job)
    params = with_best({**params, "best_hyperparameters": best_hyperparameters})
    checkpoint_dir = None  # kfp.local: the model URI is a local folder, and they go beside it
    if storage.is_remote(model.uri) and not trainer_job:
        # Durable and the same for every attempt of this task; when there is no such place, in this pod only,
        # never beside the artifact path (not uploaded).
        checkpoint_dir = (pipeline_checkpoint_dir(checkpoint_root, model.uri, run_id)
                          or tempfile.mkdtemp(prefix="train-checkpoints-"))
    # A TrainJob's pods read the Dataset from the object store by its URI; a step trains on the launcher's copy.
    history = train_model(dataset.uri if trainer_job else dataset.path, model.path, checkpoint_dir=checkpoint_dir,
                          model_uri=model.uri, **params)
    if not trainer_job and not detect(os.environ).is_primary:
        # kfp's executor writes the step's outputs (executor_output.json, the artifacts' metadata) after this
        # function returns, and every replica of a multi-host job shares those paths: only process 0 may get
        # there. The others leave the process group cleanly and exit before the executor writes anything.
        import jax

        jax.distributed.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    hyper = hyperparameters(params)
    # The hyperparameters beside the results, so that the KFP UI's run comparison shows both.
    for name, value in {**final_metrics(history), **hyper}.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(name, value)
    metrics.metadata["hidden_sizes"] = params["hidden_sizes"]
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
    import os

    from mlp_core.distributed import check_process_flags, detect

    args = _parser().parse_args(argv)
    from artifacts.locations import check_flags, check_segment

    check_flags({"--dataset": args.dataset, "--model": args.model, "--metrics": args.metrics,
                 "--tensorboard": args.tensorboard, "--checkpoint-dir": args.checkpoint_dir,
                 "--checkpoint-root": args.checkpoint_root}, local=("--tensorboard",))
    if args.run_id:
        check_segment(args.run_id, "--run-id", "run id")
    check_inputs({"--dataset": args.dataset})
    given = with_best(values(args, train))
    check_training(given)
    from artifacts.outputs import check_apart

    # Before anything else (the process group included): outputs apart from the input and from each other.
    check_apart({"--dataset": args.dataset}, {"--model": args.model, "--metrics": args.metrics,
                                              "--checkpoint-dir": args.checkpoint_dir, "--tensorboard": args.tensorboard})
    check_process_flags(args.num_processes, args.process_id, args.coordinator_timeout, args.heartbeat_timeout)
    processes = detect(os.environ, args.coordinator, 0 if args.num_processes is None else args.num_processes,
                       -1 if args.process_id is None else args.process_id)
    if args.tensorboard and processes.is_primary:
        from artifacts.outputs import check_artifact_output

        check_artifact_output(args.tensorboard, "tensorboard")  # before any work
    history = train_model(args.dataset, args.model, metrics=args.metrics, checkpoint_dir=args.checkpoint_dir,
                          processes=processes, coordinator_timeout=args.coordinator_timeout,
                          heartbeat_timeout=args.heartbeat_timeout, **given)
    if not processes.is_primary:
        print(f"process {processes.process_id} done (process 0 writes {args.model})")
        return 0
    if args.tensorboard:
        from mlp_core.tensorboard import trained_on, write_events
        from jobs.training import hyperparameters

        write_events(history, args.tensorboard, hyperparameters(given), run_id=args.run_id,
                     dataset=trained_on(args.model))
        print(f"wrote {args.tensorboard} (tensorboard --logdir {args.tensorboard})")
    print(f"wrote {args.model} (test accuracy {history[-1]['test_accuracy']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
