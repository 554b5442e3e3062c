"""The command line of ``python pipeline.py`` (and ``jax-mlp-pipeline``): compile, run, submit, schedule.

    python pipeline.py compile --output pipeline.yaml [--target vertex] [--accelerator none]
    python pipeline.py run [--epochs 3 ...] [--resume [RUN]]      # kfp.local, this machine
    python pipeline.py runs [--remove RUN ... | --keep N]         # its runs
    python pipeline.py submit --host URL | --vertex --project P --region R [--param epochs=3 ...]
    python pipeline.py schedule --cron "0 3 * * 1" --host URL | --vertex ...

The flags of ``run`` and the names ``--param`` takes are the pipeline's
parameters, derived from the steps' declarations (``pipeline.pipeline_parameters``).
"""

import argparse
import sys
from pathlib import Path

from kfp import compiler

from artifacts.locations import check_local
from commands.arguments import check_writable_folder, parse_params, validate_arguments
from commands.local import DEFAULT_ROOT, RUNNERS
from platforms.options import CUDA_SUFFIX, DEFAULT_EXPERIMENT, ClusterOptions, check_image, check_image_accelerator
from mlp_core.errors import UserError
from components._cli import error_line, expected_errors, flag_for
from components._step import add_flags
from pipeline import DEFAULT_IMAGE, PIPELINE_NAME, build_pipeline, parameter_descriptions, pipeline_parameters


def compile_pipeline(output: "str | Path", image: str = DEFAULT_IMAGE, options: "ClusterOptions | None" = None,
                     allow_mutable_image: bool = False) -> Path:
    """Write the pipeline's IR YAML to ``output``."""
    check_image(image, allow_mutable_image)
    check_image_accelerator(image, (options or ClusterOptions()).accelerator, warn=lambda m: print(m, file=sys.stderr))
    output = Path(check_local(output, "--output"))  # a gs:// text is never a local folder named gs:
    if output.suffix not in (".yaml", ".yml", ".json"):
        raise UserError(f"--output {output}: the compiled pipeline is written as .yaml (or .json), not {output.suffix or 'no extension'}")
    if output.is_dir():
        raise UserError(f"--output {output} is a folder, expected a file")
    check_writable_folder("--output", output.parent)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image, options), str(output))
    return output


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
    p.add_argument("--replicas", type=int, default=1,
                   help="run the train step as this many processes on as many machines: a Kubeflow Trainer TrainJob "
                   "on kfp (needs a gs:// pipeline root), a custom job on Vertex AI (default: %(default)s)")
    p.add_argument("--trainer-runtime", default="",
                   help="kfp with --replicas: the Kubeflow Trainer ClusterTrainingRuntime (default: jax-distributed)")
    p.add_argument("--machine-type", default="",
                   help="Vertex AI with --replicas: each replica's machine (default: one that fits the accelerator, "
                   "e.g. g2-standard-8 for NVIDIA_L4)")
    p.add_argument("--experiment", default=None,
                   help="Kubeflow (submit, schedule): the runs' experiment (default: Default); Vertex AI: log each "
                   "run's parameters and final metrics to this Vertex AI experiment (a step after evaluate)")
    p.add_argument("--tensorboard", default="", metavar="RESOURCE",
                   help="Vertex AI: upload each run's curves to this Vertex AI TensorBoard instance, "
                   "projects/P/locations/L/tensorboards/N (the experiment's backing TensorBoard; experiment "
                   f"{DEFAULT_EXPERIMENT} unless --experiment is given)")
    p.add_argument("--no-cache", action="store_true",
                   help="no step is cached (default: the compiled choice, train cached; ingest, evaluate and publish "
                   "never, they read state that is not an input)")
    p.add_argument("--allow-mutable-image", action="store_true",
                   help="accept an image tagged :latest or untagged (kfp's cache would reuse stale results)")


def _options(args, target: str) -> ClusterOptions:
    from platforms.options import DEFAULT_ACCELERATOR, parse_node_selector, parse_toleration

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
        replicas=args.replicas,
        machine_type=args.machine_type,
        trainer_runtime=args.trainer_runtime,
        # On Kubeflow, submit's --experiment names the runs' KFP experiment, not a compiled step.
        experiment=(args.experiment or "") if target == "vertex" or args.command == "compile" else "",
        tensorboard=args.tensorboard,
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python pipeline.py",
                                description="The JAX docs' MLP as a kfp v2 pipeline: compile it, run it here and list its "
                                "runs, submit or schedule it on Kubeflow Pipelines or Vertex AI.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="write the pipeline's IR YAML for Kubeflow or Vertex AI",
                       description="Compile the pipeline to IR YAML for a backend.")
    c.add_argument("--output", default="pipeline.yaml", help="YAML file to write (default: %(default)s)")
    _add_compile_options(c)

    r = sub.add_parser(
        "run",
        help="run the whole DAG on this machine with kfp.local",
        description="Run the whole DAG on this machine with kfp.local: ingest -> new-data -> validate -> train -> "
        "evaluate -> publish (given --publish-uri, when evaluate blesses the model). The steps run in this Python "
        "environment (--runner subprocess, no Docker) or in the project image (--runner docker). Defaults are the seed "
        "notebook's. Each run is a folder under --pipeline-root with its whole log (pipeline.log), its record "
        "(run.json) and its reports (report.html, validation-report.html); a run that stopped continues with --resume.",
    )
    r.add_argument("--pipeline-root", default=DEFAULT_ROOT, help="where kfp.local writes artifacts (default: %(default)s)")
    r.add_argument("--runner", choices=RUNNERS, default=None,
                   help="subprocess: this environment; docker: every step in --image (default: subprocess)")
    r.add_argument("--image", default=None, help=f"project image for --runner docker (default: {DEFAULT_IMAGE})")
    r.add_argument("--gpus", action="store_true", default=None, help="with --runner docker: pass all local GPUs to the steps")
    r.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                   help="continue a run that was interrupted or failed, with its parameters: its finished steps reused, "
                   "training from its checkpoints; RUN is its folder's name under --pipeline-root (default: the newest "
                   "unfinished run)")
    r.add_argument("--verbose", "-v", action="store_true",
                   help="show everything kfp.local and the steps print (default: a line per step, the steps' own lines "
                   "and a summary; the rest is in the run's pipeline.log)")
    add_flags(r, pipeline_parameters(), parameter_descriptions(), all_optional=True)

    runs = sub.add_parser("runs", help="list or remove the runs of `run` under a pipeline root",
                          description="List the runs `python pipeline.py run` made under --pipeline-root (newest last), "
                          "or remove some: only folders with the run.json `run` writes, never a running one.")
    runs.add_argument("--pipeline-root", default=DEFAULT_ROOT, help="where the runs are (default: %(default)s)")
    removal = runs.add_mutually_exclusive_group()
    removal.add_argument("--remove", nargs="+", metavar="RUN", help="remove these runs (folder names under the root)")
    removal.add_argument("--keep", type=int, metavar="N", help="remove all but the newest N runs")

    for name, text in (("submit", "start a run on Kubeflow Pipelines (--host) or Vertex AI (--vertex)"),
                       ("schedule", "retrain on a schedule: create, --list, --pause ID or --delete ID")):
        s = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        backend = s.add_mutually_exclusive_group(required=True)
        backend.add_argument("--host", help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080")
        backend.add_argument("--vertex", action="store_true", help="Vertex AI Pipelines (needs --project, --region)")
        s.add_argument("--project", help="Vertex AI: Google Cloud project")
        s.add_argument("--region", help="Vertex AI: region, e.g. us-central1")
        s.add_argument("--service-account", help="Vertex AI: service account the run (or schedule) acts as")
        s.add_argument("--pipeline-root", default=None, help="artifact root, gs://... (required on Vertex)")
        s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="pipeline argument; repeatable")
        s.add_argument("--name", default=None, help="run or schedule name (prefixed with jax-mlp-pipeline)")
        s.add_argument("--cache", action="store_true",
                       help="cache every step (every task of every DAG); default: as compiled, no step cached")
        kf = s.add_argument_group(
            "Kubeflow: identity, namespace, TLS",
            "secrets are read from files, never given on the command line; in a pod, KF_PIPELINES_SA_TOKEN_PATH "
            "(a projected ServiceAccount token) is used when no other identity is given")
        kf.add_argument("--namespace", help="the Kubeflow profile namespace of the experiments and runs (multi-user)")
        kf.add_argument("--token-file", metavar="FILE", help="a bearer token for the API (or its auth proxy)")
        kf.add_argument("--cookie-file", metavar="FILE",
                        help="the auth proxy's session cookie, NAME=VALUE (e.g. oauth2_proxy_kubeflow=...)")
        kf.add_argument("--client-id", metavar="ID", help="the OAuth client id of the Identity-Aware Proxy (GKE + IAP)")
        kf.add_argument("--ca-cert", metavar="FILE", help="the CA that signed the API's TLS certificate (PEM)")
        kf.add_argument("--no-verify-tls", action="store_true",
                        help="do not verify the API's TLS certificate (prefer --ca-cert)")
        kf.add_argument("--proxy", metavar="URL", help="an HTTP(S) proxy to reach the API through")
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
    root = getattr(args, "pipeline_root", None)
    if options.trainer_nodes and not (root or "").startswith("gs://"):
        # The TrainJob's pods read and write the object store themselves (platforms/kubeflow/trainer.py).
        raise UserError("--replicas on Kubeflow runs the train step as a Kubeflow Trainer job, whose pods read and "
                           f"write Cloud Storage themselves: give --pipeline-root gs://BUCKET/PATH (got {root or 'none'})")
    return compile_pipeline(Path(directory) / "pipeline.yaml", args.image, options, args.allow_mutable_image)


def _caching(args) -> "bool | None":
    """What submit and schedule tell the client: None keeps the compiled caching (ingest and evaluate uncached)."""
    if args.cache and args.no_cache:
        raise UserError("--cache and --no-cache contradict each other: give one, or neither to keep the compiled "
                           "caching")
    return True if args.cache else False if args.no_cache else None


def _cache_every_task(package: Path, enable: "bool | None") -> Path:
    """``--cache``/``--no-cache`` on Kubeflow: every task of every DAG in the package (``kfp.Client`` would set the root
    DAG's only, and most steps run inside the new-data condition's DAG)."""
    if enable is None:
        return package
    import yaml

    documents = list(yaml.safe_load_all(package.read_text()))  # the pipeline spec, then kfp-kubernetes' platform spec
    spec = documents[0]
    for component in [spec["root"], *spec.get("components", {}).values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task["cachingOptions"] = {"enableCache": enable}
    package.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return package


def _check_backend_flags(args) -> None:
    """A flag of the other backend is refused, not silently ignored."""
    if args.vertex:
        given = [f for f in ("namespace", "token_file", "cookie_file", "client_id", "ca_cert", "proxy")
                 if getattr(args, f) is not None]
        if given or args.no_verify_tls:
            flag = "--" + (given[0] if given else "no_verify_tls").replace("_", "-")
            raise UserError(f"{flag} is a Kubeflow option; Vertex AI uses your Google Cloud credentials")
        if getattr(args, "catchup", False):
            raise UserError("--catchup is a Kubeflow option (a recurring run's no_catchup); with --vertex it would be "
                               "ignored")
        return
    given = [f for f in ("project", "region", "service_account") if getattr(args, f) is not None]
    if given:
        raise UserError(f"--{given[0].replace('_', '-')} is a Vertex AI option; with --host (Kubeflow) it would be "
                           "ignored")


def _connection(args):
    from artifacts.locations import check_location
    from platforms.kubeflow.pipelines import Connection, check_identity

    _check_backend_flags(args)
    if args.pipeline_root:  # well formed before any credentials are looked up or any request is made
        check_location(args.pipeline_root, "--pipeline-root")
    if args.vertex:
        return None
    if args.token_file and args.client_id:
        raise UserError("give one identity: --token-file or --client-id")
    conn = Connection(host=args.host, namespace=args.namespace, token_file=args.token_file, cookie_file=args.cookie_file,
                      client_id=args.client_id, ca_cert=args.ca_cert, verify_tls=not args.no_verify_tls, proxy=args.proxy)
    check_identity(conn)  # every file read and checked now, before any work
    if args.no_verify_tls:
        print(f"warning: not verifying the TLS certificate of {args.host}", file=sys.stderr)
    return conn


def _warn(message: str) -> None:
    from artifacts import redaction

    print(redaction.redact(message), file=sys.stderr)


def _submit(args) -> int:
    import tempfile

    from platforms.kubeflow import pipelines as kubeflow
    from platforms.vertex import pipelines as vertex

    caching = _caching(args)
    arguments = parse_params(args.param)
    validate_arguments(arguments)
    conn = _connection(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.vertex:
            package = _compiled(args, "vertex", tmp)
            job = vertex.build_job(package, args.project, args.region, args.pipeline_root or "", arguments,
                                   enable_caching=caching, display_name=args.name or PIPELINE_NAME)
            print(f"submitted: {vertex.submit(job, args.service_account)}")
        else:
            package = _cache_every_task(_compiled(args, "kfp", tmp), caching)
            run_id, url = kubeflow.submit(package, conn, arguments, args.experiment, args.pipeline_root,
                                          enable_caching=None, run_name=args.name, warn=_warn)
            print(f"run {run_id}: {url}")
    return 0


def _schedule(args) -> int:
    import tempfile

    from platforms import cron
    from platforms.kubeflow import pipelines as kubeflow
    from platforms.vertex import pipelines as vertex

    actions = [flag for flag, given in (("--cron", args.cron), ("--list", args.list), ("--pause", args.pause),
                                        ("--delete", args.delete)) if given not in (None, False)]
    if len(actions) > 1:
        raise UserError(f"schedule takes one of --cron, --list, --pause ID, --delete ID (got {' and '.join(actions)})")
    if actions and actions[0] != "--cron" and args.param:
        raise UserError(f"--param is for creating a schedule (--cron); {actions[0]} takes none")
    caching = _caching(args)
    conn = _connection(args)
    if args.list:
        rows = vertex.list_schedules(args.project, args.region) if args.vertex else kubeflow.list_schedules(conn)
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
                getattr(kubeflow, verb)(conn, action)
            print(f"{verb}d {action}")
            return 0
    if not args.cron:
        raise UserError("schedule needs --cron (or --list, --pause ID, --delete ID)")
    cron.validate(args.cron)
    if not args.vertex:
        cron.to_kfp(args.cron)  # a TZ= prefix Kubeflow cannot take: refused before anything is compiled
    arguments = parse_params(args.param)
    validate_arguments(arguments)
    name = args.name or "retrain"
    with tempfile.TemporaryDirectory() as tmp:
        if args.vertex:
            package = _compiled(args, "vertex", tmp)
            job = vertex.build_job(package, args.project, args.region, args.pipeline_root or "", arguments,
                                   enable_caching=caching)
            created = vertex.schedule(job, args.cron, name, args.service_account)
            print(f"schedule {created.resource_name} ({args.cron})")
        else:
            kfp_cron = cron.to_kfp(args.cron)
            print(f"Kubeflow cron has six fields, seconds first: {args.cron!r} is sent as {kfp_cron!r}")
            package = _cache_every_task(_compiled(args, "kfp", tmp), caching)
            schedule_id = kubeflow.schedule(package, conn, args.cron, arguments, name, args.experiment,
                                            args.pipeline_root, enable_caching=None, catchup=args.catchup,
                                            warn=_warn)
            print(f"recurring run {schedule_id} (at most one run at a time, {'with' if args.catchup else 'no'} catch-up)")
    print("next runs: " + ", ".join(t.isoformat() for t in cron.next_runs(args.cron)))
    return 0


def _run(args) -> int:
    from commands.local import plan_run, run_local

    arguments = {name: getattr(args, name) for name in pipeline_parameters() if getattr(args, name) is not None}
    validate_arguments(arguments)
    plan = plan_run(arguments, args.pipeline_root, args.image, args.runner, args.gpus, args.resume)
    try:
        run = run_local(plan, verbose=args.verbose)
    except KeyboardInterrupt:  # before the run's own handler was in place, or after it
        print("interrupted", file=sys.stderr)
        return 130
    return {"finished": 0, "failed": 1, "interrupted": 130}[run.status]


def _runs(args) -> int:
    from datetime import datetime

    from commands import local_runs
    from artifacts.locations import check_local

    root = Path(check_local(args.pipeline_root, "--pipeline-root"))
    if args.remove or args.keep is not None:
        removed = local_runs.remove(root, args.remove) if args.remove else local_runs.keep(root, args.keep)
        for name in removed:
            print(f"removed {root / name}")
        if not removed:
            print("nothing removed")
        return 0
    found = local_runs.runs(root)
    if not found:
        print(f"no runs under {root}")
        return 0
    defaults = {name: p.default for name, p in pipeline_parameters().items()}
    rows = [("RUN", "STARTED", "STATUS", "TEST ACC", "PUBLISHED", "PARAMETERS")]
    for folder, record in found:
        try:
            started = datetime.fromisoformat(record.get("started_at", "")).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            started = "?"
        accuracy = record.get("test_accuracy")
        changed = [f"{name}={value}" for name, value in record["parameters"].items() if value != defaults.get(name)]
        if record.get("runner", "subprocess") != "subprocess":
            changed.insert(0, f"runner={record['runner']}")
        rows.append((folder.name, started, local_runs.status(folder, record),
                     f"{accuracy:.4f}" if isinstance(accuracy, float) else "-", record.get("published") or "-",
                     " ".join(changed) or "(defaults)"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
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
        if args.command == "runs":
            return _runs(args)
        return _run(args)
    except Exception as e:  # the components' error boundary: bad input is one line, exit 2
        if not isinstance(e, expected_errors()):
            raise
        print(f"error: {_printable(e, args.command)}", file=sys.stderr)
        return 2


def _printable(e: Exception, command: str = "") -> str:
    """An error's first line, without any secret (``artifacts.redaction``): what ``error:`` lines print.

    A parameter is named as the user gave it: ``--epochs`` to ``run``, ``--param epochs`` to ``submit``/``schedule``.
    """
    if command in ("submit", "schedule"):
        return error_line(e, name=lambda field: field if field.startswith("-") else "--param " + field)
    return error_line(e, name=flag_for)


def cli() -> None:
    """Console entry point ``jax-mlp-pipeline``."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
