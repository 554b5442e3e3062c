"""Running the whole pipeline on this machine with kfp.local: in this environment or in the project image."""

from __future__ import annotations

from pathlib import Path


def run_local(
    arguments: dict,
    pipeline_root: "str | Path" = "local_outputs",
    image: "str | None" = None,
    runner: str = "subprocess",
    gpus: bool = False,
):
    """Run the DAG on this machine with kfp.local; returns the run (``LocalRun``: its folder and summary).

    ``runner="subprocess"``: every step in this Python environment.
    ``runner="docker"``: every step in ``image`` with ``kfp.local.DockerRunner``,
    as the cluster runs it; the TFDS data dir is mounted read-only, steps run as
    this user (so the artifacts they write are yours), and ``gpus`` passes all
    local GPUs through (NVIDIA container toolkit needed).
    """
    import warnings

    from kfp import local

    from mlp_core.locations import check_local
    from pipeline import DEFAULT_IMAGE, build_pipeline

    # kfp.local writes every artifact under this folder: a gs:// or other remote-looking text is refused, never
    # turned into a folder named "gs:" here (kfp.local has no object-store backend).
    pipeline_root = check_local(pipeline_root, "--pipeline-root")

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
    task = build_pipeline(image or DEFAULT_IMAGE)(**arguments)
    return LocalRun(Path(task.outputs["dataset"].path).parent.parent)


class LocalRun:
    """A finished kfp.local run: its folder ``<pipeline root>/<pipeline>-<time>/<task>/<artifact>``.

    kfp.local writes each task's outputs (artifact URIs and metadata, parameter values) to
    ``<task>/executor_output.json`` (kfp/local/executor_output_utils.py); the summary is read from there, since
    the pipeline returns only what every run makes (the steps after new_data run under a condition).
    """

    ARTIFACTS = {"ingest": ("dataset",), "validate": ("report", "anomalies"),
                 "train": ("model", "metrics", "tensorboard"),
                 "evaluate": ("metrics", "classification_metrics", "report", "report_markdown")}

    def __init__(self, folder: Path):
        self.folder = folder

    def outputs(self, task: str) -> "dict | None":
        """The task's executor output, or None when the task did not run."""
        import json

        try:
            return json.loads((self.folder / task / "executor_output.json").read_text())
        except (OSError, ValueError):
            return None

    def artifact(self, task: str, name: str) -> "dict | None":
        found = ((self.outputs(task) or {}).get("artifacts") or {}).get(name, {}).get("artifacts") or [None]
        return found[0]

    def summary(self, seconds: float) -> "list[str]":
        """What the run did, in lines: which steps ran, where their artifacts are, the test accuracy."""
        lines = [f"pipeline finished in {seconds:.1f} s"]
        decision = (self.outputs("new-data") or {}).get("parameterValues", {}).get("Output")
        if decision is False:
            lines.append("  nothing new since the champion: stopped after ingest (the new-data step says why)")
        for task, names in self.ARTIFACTS.items():
            for name in names:
                artifact = self.artifact(task, name)
                if artifact is not None:
                    lines.append(f"  {task + '/' + name:<33} {artifact['uri']}")
        test = (self.artifact("evaluate", "metrics") or {}).get("metadata") or {}
        if "test_accuracy" in test:
            lines.append(f"test accuracy {test['test_accuracy']:.4f} (test loss {test['test_loss']:.4f})")
        return lines


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
