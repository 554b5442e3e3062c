"""The kfp v2 pipeline (ingest -> train -> evaluate) and its command line.

    python pipeline.py compile --output pipeline.yaml --image IMAGE
    python pipeline.py run [--epochs N ...]        # the whole DAG on this machine (kfp.local)

The image is a compile option, never read from the environment: the same
command compiles the same YAML on every machine.
"""

import argparse
import re
import sys
import time
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from clusters.options import CUDA_SUFFIX, ClusterError, ClusterOptions, check_image, check_image_accelerator
from clusters.options import apply as apply_options
from components import evaluate, ingest, publish, train

PIPELINE_NAME = "jax-mlp-pipeline"
# The project image; `make image` builds it under this tag.
DEFAULT_IMAGE = "jax-mlp-pipeline:0.1.0"


def build_pipeline(image: str = DEFAULT_IMAGE, options: "ClusterOptions | None" = None):
    """The pipeline function with every step running on ``image``.

    ``options`` say how it runs on its backend (resources, GPU, retries, caching);
    the default is for kfp.local: no resources and no retries, caching as on a cluster.
    """
    options = options or ClusterOptions()
    ingest_component = ingest.component(image)
    train_component = train.component(image)
    evaluate_component = evaluate.component(image)
    publish_component = publish.component(image)

    class Outputs(NamedTuple):
        dataset: Dataset
        model: Model
        train_metrics: Metrics
        test_metrics: Metrics
        confusion_matrix: ClassificationMetrics
        report: HTML
        report_markdown: Markdown

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="The JAX docs' MLP on MNIST: tfds -> TFRecords, JAX training, evaluation.",
    )
    def mlp_pipeline(
        dataset_name: str = "mnist",
        tfds_data_dir: str = "",
        train_split: str = "train",
        test_split: str = "test",
        records_per_shard: int = ingest.DEFAULT_RECORDS_PER_SHARD,
        hidden_sizes: str = train.DEFAULT_HIDDEN,
        step_size: float = train.DEFAULT.step_size,
        batch_size: int = train.DEFAULT.batch_size,
        epochs: int = train.DEFAULT.num_epochs,
        seed: int = train.DEFAULT.seed,
        shuffle: bool = train.DEFAULT.shuffle,
        placement: str = "auto",
        blessing_threshold: float = evaluate.DEFAULT_THRESHOLD,
        blessing_tolerance: float = evaluate.DEFAULT_TOLERANCE,
        publish_uri: str = "",
        checkpoint_root: str = "",
    ) -> Outputs:
        ingest_task = ingest_component(
            dataset_name=dataset_name,
            tfds_data_dir=tfds_data_dir,
            train_split=train_split,
            test_split=test_split,
            records_per_shard=records_per_shard,
        )
        apply_options(ingest_task, "ingest", options)
        train_task = train_component(
            dataset=ingest_task.outputs["dataset"],
            hidden_sizes=hidden_sizes,
            step_size=step_size,
            batch_size=batch_size,
            epochs=epochs,
            seed=seed,
            shuffle=shuffle,
            placement=placement,
            checkpoint_root=checkpoint_root,
            # Whole values, joined inside the step: the Kubeflow backend substitutes a
            # placeholder only when it is a parameter's whole value (driver/resolve.go).
            pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            require_gpu=bool(options.accelerator),
        )
        apply_options(train_task, "train", options)
        evaluate_task = evaluate_component(
            model=train_task.outputs["model"],
            dataset=ingest_task.outputs["dataset"],
            threshold=blessing_threshold,
            tolerance=blessing_tolerance,
            publish_uri=publish_uri,
        )
        apply_options(evaluate_task, "evaluate", options)
        with dsl.If(publish_uri != "", name="publish-uri-given"):
            with dsl.If(evaluate_task.outputs["blessed"] == True, name="blessed"):  # noqa: E712 - a kfp condition
                publish_task = publish_component(
                    model=train_task.outputs["model"],
                    publish_uri=publish_uri,
                    test_accuracy=evaluate_task.outputs["test_accuracy"],
                    test_loss=evaluate_task.outputs["test_loss"],
                    tolerance=blessing_tolerance,
                    image=image,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                )
                apply_options(publish_task, "publish", options)
        return Outputs(
            dataset=ingest_task.outputs["dataset"],
            model=train_task.outputs["model"],
            train_metrics=train_task.outputs["metrics"],
            test_metrics=evaluate_task.outputs["metrics"],
            confusion_matrix=evaluate_task.outputs["classification_metrics"],
            report=evaluate_task.outputs["report"],
            report_markdown=evaluate_task.outputs["report_markdown"],
        )

    return mlp_pipeline


def compile_pipeline(output: "str | Path", image: str = DEFAULT_IMAGE, options: "ClusterOptions | None" = None,
                     allow_mutable_image: bool = False) -> Path:
    """Write the pipeline's IR YAML to ``output``."""
    check_image(image, allow_mutable_image)
    check_image_accelerator(image, (options or ClusterOptions()).accelerator, warn=lambda m: print(m, file=sys.stderr))
    output = Path(output)
    if output.suffix not in (".yaml", ".yml", ".json"):
        raise ClusterError(f"--output {output}: the compiled pipeline is written as .yaml (or .json), not {output.suffix or 'no extension'}")
    if output.is_dir():
        raise ClusterError(f"--output {output} is a folder, expected a file")
    _check_writable_folder("--output", output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image, options), str(output))
    return output


def run_local(
    arguments: dict,
    pipeline_root: "str | Path" = "local_outputs",
    image: str = DEFAULT_IMAGE,
    runner: str = "subprocess",
    gpus: bool = False,
):
    """Run the DAG on this machine with kfp.local; returns the pipeline's outputs.

    ``runner="subprocess"``: every step in this Python environment.
    ``runner="docker"``: every step in ``image`` with ``kfp.local.DockerRunner``,
    as the cluster runs it; the TFDS data dir is mounted read-only, steps run as
    this user (so the artifacts they write are yours), and ``gpus`` passes all
    local GPUs through (NVIDIA container toolkit needed).
    """
    import warnings

    from kfp import local

    if runner == "subprocess":
        # Running the steps in this environment instead of the image is the point of this runner.
        warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
        local_runner = local.SubprocessRunner(use_venv=False)
    elif runner == "docker":
        arguments = dict(arguments)
        local_runner = _docker_runner(arguments, gpus)
    else:
        raise ValueError(f"runner must be subprocess or docker, got {runner!r}")
    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    local.init(runner=local_runner, pipeline_root=str(pipeline_root))
    task = build_pipeline(image)(**arguments)
    return task.outputs


def _docker_runner(arguments: dict, gpus: bool):
    """A DockerRunner that sees this machine's TFDS data dir (``arguments`` gets its path)."""
    import os

    from docker.types import DeviceRequest, Mount
    from kfp import local

    data_dir = arguments.get("tfds_data_dir") or os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    if not data_dir.startswith("gs://"):
        data_dir = str(Path(data_dir).resolve())
        arguments["tfds_data_dir"] = data_dir
    mounts = [] if data_dir.startswith("gs://") else [Mount(target=data_dir, source=data_dir, type="bind", read_only=True)]
    extra = {"device_requests": [DeviceRequest(count=-1, capabilities=[["gpu"]])]} if gpus else {}
    return local.DockerRunner(
        user=f"{os.getuid()}:{os.getgid()}",
        environment={"HOME": "/tmp"},  # a host uid has no home in the image
        mounts=mounts,
        **extra,
    )


# (flag, pipeline parameter, type, help): mirrors the component CLIs one to one.
_PARAMETERS = [
    ("--dataset", "dataset_name", str, "tfds dataset name"),
    ("--tfds-data-dir", "tfds_data_dir", str, "TFDS data dir, local or gs:// (default: tfds's own)"),
    ("--train-split", "train_split", str, "tfds split to train on, slicing allowed: 'train[:512]'"),
    ("--test-split", "test_split", str, "tfds split to test on"),
    ("--records-per-shard", "records_per_shard", int, "TFRecord shard size"),
    ("--hidden-sizes", "hidden_sizes", str, "hidden layer widths, comma-separated"),
    ("--step-size", "step_size", float, "SGD step size"),
    ("--batch-size", "batch_size", int, "batch size"),
    ("--epochs", "epochs", int, "epochs"),
    ("--seed", "seed", int, "PRNG seed for init and shuffling"),
    ("--placement", "placement", str, "auto, device (whole dataset on the device) or stream (tf.data batches)"),
    ("--blessing-threshold", "blessing_threshold", float, "minimum test accuracy to bless (and publish) the model"),
    ("--blessing-tolerance", "blessing_tolerance", float, "how far below the champion's test accuracy is still blessed"),
    ("--publish-uri", "publish_uri", str, "publish blessed models here (folder or gs://); empty: do not publish"),
    ("--checkpoint-root", "checkpoint_root", str,
     "durable checkpoints of the train step, gs:// or a folder (default: under the pipeline root)"),
]
_TYPES = {name: kind for _, name, kind, _ in _PARAMETERS} | {"shuffle": bool}


def validate_arguments(arguments: dict) -> dict:
    """Every pipeline argument checked by its step's own validation, before any step runs; returns them all.

    A run with ``epochs=0`` must fail now, not after ingest has worked for a minute;
    ``submit`` and ``schedule`` must not send a pipeline that is bound to fail.
    """
    import inspect

    from components.train import DEFAULT, build_config
    from mlp_core.blessing import check_fraction
    from mlp_core.train import choose_placement

    defaults = {name: p.default for name, p in inspect.signature(build_pipeline().pipeline_func).parameters.items()}
    values = {**defaults, **arguments}
    if not isinstance(values["records_per_shard"], int) or values["records_per_shard"] <= 0:
        raise ClusterError(f"records_per_shard must be a positive integer, got {values['records_per_shard']!r}")
    if not values["dataset_name"]:
        raise ClusterError("dataset_name must not be empty")
    # The input and output widths come from the data at run time; any stand-ins check the rest.
    build_config({"image_shape": [DEFAULT.layer_sizes[0]], "num_classes": DEFAULT.layer_sizes[-1]}, values["hidden_sizes"],
                 step_size=values["step_size"], batch_size=values["batch_size"], num_epochs=values["epochs"],
                 seed=values["seed"], shuffle=values["shuffle"])
    choose_placement(1, values["placement"]) if values["placement"] != "auto" else None
    check_fraction("blessing_threshold", values["blessing_threshold"])
    check_fraction("blessing_tolerance", values["blessing_tolerance"])
    for name in ("publish_uri", "checkpoint_root"):
        location = values[name]
        if location and "://" not in location:
            _check_writable_folder(name, Path(location))
    return values


def _check_writable_folder(name: str, path: Path) -> None:
    """``path`` is, or can become, a folder this user can write (probed in its nearest existing parent)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ClusterError(f"{name} {path}: {existing} is a file, not a folder")
    import tempfile

    try:  # os.access says yes to root everywhere, even on /proc: try it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ClusterError(f"{name} {path} cannot be written (cannot create a file in {existing}: {e.strerror or e})") from None


def parse_params(items: "list[str]") -> dict:
    """``["epochs=3", "shuffle=false"]`` -> typed pipeline arguments; unknown names are refused."""
    arguments = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ClusterError(f"--param must be name=value, got {item!r}")
        if name not in _TYPES:
            raise ClusterError(f"the pipeline has no parameter {name!r}; it has: {', '.join(sorted(_TYPES))}")
        kind = _TYPES[name]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                arguments[name] = text.lower() in ("true", "1", "yes")
            else:
                arguments[name] = kind(text)
        except ValueError:
            raise ClusterError(f"--param {name} needs a {kind.__name__}, got {text!r}") from None
    return arguments


def _add_compile_options(p: argparse.ArgumentParser, target_choice: bool = True) -> None:
    p.add_argument("--image", default=None,
                   help=f"project image every step runs on (default: {DEFAULT_IMAGE}{CUDA_SUFFIX} when the train step "
                   f"requests a GPU, {DEFAULT_IMAGE} with --accelerator none)")
    if target_choice:
        p.add_argument("--target", choices=("kfp", "vertex"), default="kfp", help="backend to compile for (default: kfp)")
    p.add_argument("--accelerator", default=None,
                   help="GPU for the train step: a Kubernetes resource (nvidia.com/gpu) on kfp, an accelerator type "
                   "(NVIDIA_L4, NVIDIA_TESLA_T4, NVIDIA_H100_80GB, ...) on Vertex; 'none' for CPU only "
                   "(default: nvidia.com/gpu on kfp, NVIDIA_L4 on Vertex)")
    p.add_argument("--accelerator-count", type=int, default=1, help="GPUs for the train step (default: 1)")
    p.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE",
                   help="kfp only: node selector of the train step (kfp-kubernetes); repeatable")
    p.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE][:EFFECT]",
                   help="kfp only: toleration of the train step, e.g. nvidia.com/gpu:NoSchedule; repeatable")
    p.add_argument("--no-cache", action="store_true", help="turn kfp's step caching off (on by default)")
    p.add_argument("--allow-mutable-image", action="store_true",
                   help="accept an image tagged :latest or untagged (kfp's cache would reuse stale results)")


def _options(args, target: str) -> ClusterOptions:
    from clusters.options import DEFAULT_ACCELERATOR, parse_node_selector, parse_toleration

    accelerator = DEFAULT_ACCELERATOR[target] if args.accelerator is None else args.accelerator
    if args.image is None:  # the project's image variant that matches the request
        args.image = DEFAULT_IMAGE if accelerator.lower() == "none" else DEFAULT_IMAGE + CUDA_SUFFIX
    return ClusterOptions(
        target=target,
        accelerator=None if accelerator.lower() == "none" else accelerator,
        accelerator_count=args.accelerator_count,
        node_selector=parse_node_selector(args.node_selector),
        tolerations=tuple(parse_toleration(t) for t in args.toleration),
        enable_caching=not args.no_cache,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python pipeline.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="write the pipeline's IR YAML for Kubeflow or Vertex AI",
                       description="Compile the pipeline to IR YAML for a backend.")
    c.add_argument("--output", default="pipeline.yaml", help="YAML file to write (default: %(default)s)")
    _add_compile_options(c)

    r = sub.add_parser(
        "run",
        help="run the whole DAG on this machine with kfp.local",
        description="Run ingest -> train -> evaluate on this machine with kfp.local: in this Python environment "
        "(--runner subprocess, no Docker) or in the project image (--runner docker). Defaults are the seed notebook's.",
    )
    r.add_argument("--pipeline-root", default="local_outputs", help="where kfp.local writes artifacts (default: %(default)s)")
    r.add_argument("--runner", choices=("subprocess", "docker"), default="subprocess",
                   help="subprocess: this environment; docker: every step in --image (default: %(default)s)")
    r.add_argument("--image", default=DEFAULT_IMAGE, help="project image for --runner docker (default: %(default)s)")
    r.add_argument("--gpus", action="store_true", help="with --runner docker: pass all local GPUs to the steps")
    for flag, name, kind, text in _PARAMETERS:
        r.add_argument(flag, dest=name, type=kind, default=None, help=text)
    r.add_argument("--shuffle", dest="shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="shuffle each epoch; --no-shuffle is the seed's order (default: shuffle)")

    for name, text in (("submit", "start a run on Kubeflow Pipelines (--host) or Vertex AI (--vertex)"),
                       ("schedule", "retrain on a schedule: create, --list, --pause ID or --delete ID")):
        s = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        backend = s.add_mutually_exclusive_group(required=True)
        backend.add_argument("--host", help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080")
        backend.add_argument("--vertex", action="store_true", help="Vertex AI Pipelines (needs --project, --region)")
        s.add_argument("--project", help="Vertex AI: Google Cloud project")
        s.add_argument("--region", help="Vertex AI: region, e.g. us-central1")
        s.add_argument("--service-account", help="Vertex AI: service account the run (or schedule) acts as")
        s.add_argument("--experiment", default=None, help="Kubeflow: experiment name (default: Default)")
        s.add_argument("--pipeline-root", default=None, help="artifact root, gs://... (required on Vertex)")
        s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="pipeline argument; repeatable")
        s.add_argument("--name", default=None, help="run or schedule name (prefixed with jax-mlp-pipeline)")
        _add_compile_options(s, target_choice=False)
        if name == "schedule":
            s.add_argument("--cron", help='standard five-field cron, e.g. "0 3 * * 1" (Vertex also takes a TZ= prefix)')
            s.add_argument("--catchup", action="store_true", help="Kubeflow: run missed intervals after a pause")
            s.add_argument("--list", action="store_true", help="list this project's schedules")
            s.add_argument("--pause", metavar="ID", help="pause a schedule")
            s.add_argument("--delete", metavar="ID", help="delete a schedule")
    return p


def _compiled(args, target: str, directory: str) -> Path:
    options = _options(args, target)  # first: it picks the image variant when --image is not given
    return compile_pipeline(Path(directory) / "pipeline.yaml", args.image, options, args.allow_mutable_image)


def _submit(args) -> int:
    import tempfile

    from clusters import kubeflow, vertex

    arguments = parse_params(args.param)
    validate_arguments(arguments)
    with tempfile.TemporaryDirectory() as tmp:
        if args.vertex:
            package = _compiled(args, "vertex", tmp)
            job = vertex.build_job(package, args.project, args.region, args.pipeline_root or "", arguments,
                                   enable_caching=not args.no_cache, display_name=args.name or PIPELINE_NAME)
            print(f"submitted: {vertex.submit(job, args.service_account)}")
        else:
            package = _compiled(args, "kfp", tmp)
            run_id, url = kubeflow.submit(package, args.host, arguments, args.experiment, args.pipeline_root,
                                          enable_caching=not args.no_cache, run_name=args.name)
            print(f"run {run_id}: {url}")
    return 0


def _schedule(args) -> int:
    import tempfile

    from clusters import cron, kubeflow, vertex

    if args.list:
        rows = vertex.list_schedules(args.project, args.region) if args.vertex else kubeflow.list_schedules(args.host)
        for row in rows:
            print(f"{row['id']}  {row['name']}  {row['status']}  {row['cron']}")
        if not rows:
            print("no schedules of this pipeline")
        return 0
    for action, verb in ((args.pause, "pause"), (args.delete, "delete")):
        if action:
            if args.vertex:
                getattr(vertex, verb)(args.project, args.region, action)
            else:
                getattr(kubeflow, verb)(args.host, action)
            print(f"{verb}d {action}")
            return 0
    if not args.cron:
        raise ClusterError("schedule needs --cron (or --list, --pause ID, --delete ID)")
    cron.validate(args.cron)
    arguments = parse_params(args.param)
    validate_arguments(arguments)
    name = args.name or "retrain"
    with tempfile.TemporaryDirectory() as tmp:
        if args.vertex:
            package = _compiled(args, "vertex", tmp)
            job = vertex.build_job(package, args.project, args.region, args.pipeline_root or "", arguments,
                                   enable_caching=not args.no_cache)
            created = vertex.schedule(job, args.cron, name, args.service_account)
            print(f"schedule {created.resource_name} ({args.cron})")
        else:
            kfp_cron = cron.to_kfp(args.cron)
            print(f"Kubeflow cron has six fields, seconds first: {args.cron!r} is sent as {kfp_cron!r}")
            package = _compiled(args, "kfp", tmp)
            schedule_id = kubeflow.schedule(package, args.host, args.cron, arguments, name, args.experiment,
                                            args.pipeline_root, enable_caching=not args.no_cache, catchup=args.catchup)
            print(f"recurring run {schedule_id} (at most one run at a time, {'with' if args.catchup else 'no'} catch-up)")
    print("next runs: " + ", ".join(t.isoformat() for t in cron.next_runs(args.cron)))
    return 0


def _run(args) -> int:
    arguments = {name: getattr(args, name) for _, name, _, _ in _PARAMETERS if getattr(args, name) is not None}
    if args.shuffle is not None:
        arguments["shuffle"] = args.shuffle
    validate_arguments(arguments)
    started = time.perf_counter()
    try:
        outputs = run_local(arguments, args.pipeline_root, args.image, args.runner, args.gpus)
    except RuntimeError as e:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(e).splitlines()[0])  # kfp colours its messages
        print(f"error: {message} (the task's own error is in its log above)", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    test = outputs["test_metrics"].metadata
    print(f"\npipeline finished in {seconds:.1f} s")
    for name in ("dataset", "model", "train_metrics", "test_metrics", "confusion_matrix", "report", "report_markdown"):
        print(f"  {name:<17} {outputs[name].path}")
    print(f"test accuracy {test['test_accuracy']:.4f} (test loss {test['test_loss']:.4f})")
    return 0


def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "compile":
            options = _options(args, args.target)
            path = compile_pipeline(args.output, args.image, options, args.allow_mutable_image)
            print(f"wrote {path} (target {args.target}, image {args.image})")
            return 0
        if args.command == "submit":
            return _submit(args)
        if args.command == "schedule":
            return _schedule(args)
        return _run(args)
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the components' error boundary: bad input is one line, exit 2
        from components._cli import expected_errors

        if not isinstance(e, expected_errors()):
            raise
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2


def cli() -> None:
    """Console entry point ``jax-mlp-pipeline``."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
