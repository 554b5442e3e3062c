"""Track: a Vertex AI pipeline run in Vertex AI Experiments, its curves in Vertex AI TensorBoard.

    python -m components.track --job projects/P/locations/L/pipelineJobs/J --experiment mnist-mlp \\
        --train-metrics train.json --test-metrics test.json [--tensorboard-dir DIR --tensorboard-instance RESOURCE]

In the pipeline only when it is compiled with ``--experiment`` or
``--tensorboard`` for Vertex AI (``python pipeline.py submit --vertex ...``).
How: ``platforms.vertex.experiments``.
"""

import argparse
import os
import sys

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics

from platforms.options import StepPolicy
from components._cli import exit_on_error
from components._step import descriptions

# On a cluster: a few API calls. Never cached: it writes to Vertex AI, state that is not one of its inputs.
CLUSTER = StepPolicy("500m", "1", "1Gi", "2Gi", cacheable=False,
                     retry={"num_retries": 2, "backoff_duration": "30s", "backoff_factor": 2.0,
                            "backoff_max_duration": "300s"})


def run_record(train_metrics: dict, test_metrics: dict) -> "tuple[dict, dict]":
    """``(params, metrics)`` of a run: the train step's hyperparameters; its final metrics and the test metrics."""
    from artifacts.schemas import TEST_METRICS
    from mlp_core.metrics import final_metrics

    params = {k.removeprefix("param_"): v for k, v in train_metrics["hyperparameters"].items()}
    # the evaluate step's metrics its schema names (not the per-class F1s)
    tested = {k: test_metrics[k] for k in TEST_METRICS["properties"] if k in test_metrics}
    metrics = {**final_metrics(train_metrics["history"]), **tested}
    return params, metrics


def track(
    train_metrics: Input[Metrics],
    test_metrics: Input[Metrics],
    tensorboard: Input[Artifact],
    experiment: str,
    tensorboard_instance: str,
    job: str,
) -> str:
    """Log the run's parameters and final metrics to Vertex AI Experiments, its curves to Vertex AI TensorBoard.

    Args:
        train_metrics: the train step's metrics (history and hyperparameters)
        test_metrics: the evaluate step's metrics
        tensorboard: the train step's TensorBoard event files
        experiment: the Vertex AI experiment (created if needed); the run is named after the pipeline job
        tensorboard_instance: a Vertex AI TensorBoard instance to upload the curves to
            (projects/P/locations/L/tensorboards/N), or empty
        job: the pipeline job's resource name (the pipeline fills it in)
    """
    from components.track import _read, run_record
    from platforms.vertex.experiments import track_run
    from artifacts.schemas import TEST_METRICS, TRAIN_METRICS, validate

    given = validate(dict(test_metrics.metadata), TEST_METRICS, "the evaluate step's Metrics")
    params, metrics = run_record(_read(train_metrics.path, TRAIN_METRICS), given)
    run = track_run(job, experiment, params, metrics, tensorboard.path, tensorboard_instance)
    print(f"logged run {run} to Vertex AI experiment {experiment}"
          + (f", its curves to {tensorboard_instance}" if tensorboard_instance else ""))
    return run


def component(base_image: str):
    """``track`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(track, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    texts = descriptions(track)
    p = argparse.ArgumentParser(prog="python -m components.track",
                                description="Log a Vertex AI pipeline run to Vertex AI Experiments (parameters, final "
                                "metrics) and its TensorBoard event files to Vertex AI TensorBoard.")
    p.add_argument("--job", required=True, help="the Vertex AI pipeline job, projects/P/locations/L/pipelineJobs/J")
    p.add_argument("--experiment", required=True, help=texts["experiment"])
    p.add_argument("--train-metrics", required=True, help="the train step's --metrics JSON")
    p.add_argument("--test-metrics", required=True, help="the evaluate step's --metrics JSON")
    p.add_argument("--tensorboard-dir", default=None, help="the train step's --tensorboard folder")
    p.add_argument("--tensorboard-instance", default="", help=texts["tensorboard_instance"])
    return p


def _read(path: str, schema: dict) -> dict:
    from artifacts import storage
    from mlp_core.errors import UserError
    from artifacts.schemas import loads, validate

    try:
        text = storage.read_bytes(path, storage.METRICS)
    except OSError as e:
        raise UserError(str(e)) from None
    return validate(loads(text, path), schema, path)


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    from artifacts.locations import is_remote
    from mlp_core.errors import UserError
    from platforms.vertex.experiments import check_experiment, check_job, check_tensorboard, track_run
    from artifacts.schemas import TEST_METRICS, TRAIN_METRICS

    args = _parser().parse_args(argv)
    # Every name before any work: the experiment with the ids derived from this job's id (platforms.vertex.experiments).
    check_experiment(args.experiment, check_job(args.job).group("job").lower())
    if args.tensorboard_instance:
        check_tensorboard(args.tensorboard_instance)
        if not args.tensorboard_dir:
            raise UserError("--tensorboard-instance needs --tensorboard-dir, the event files to upload")
    if args.tensorboard_dir and not is_remote(args.tensorboard_dir) and not os.path.isdir(args.tensorboard_dir):
        raise UserError(f"--tensorboard-dir {args.tensorboard_dir} is not a folder (of TensorBoard event files)")
    params, metrics = run_record(_read(args.train_metrics, TRAIN_METRICS), _read(args.test_metrics, TEST_METRICS))
    run = track_run(args.job, args.experiment, params, metrics, args.tensorboard_dir, args.tensorboard_instance)
    print(f"logged run {run} to Vertex AI experiment {args.experiment}"
          + (f", its curves to {args.tensorboard_instance}" if args.tensorboard_instance else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
