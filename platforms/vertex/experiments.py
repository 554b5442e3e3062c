"""A Vertex AI pipeline run in Vertex AI Experiments, and its curves in Vertex AI TensorBoard.

One experiment run per pipeline run, named after the pipeline job (its hyperparameters and final metrics); with a
TensorBoard instance, the train step's event files go to the TensorBoard run of that name. Project and region come
from the pipeline job's resource name, so a compiled pipeline names none.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from artifacts.locations import PROJECT, REGION
from mlp_core.errors import UserError

# Resource names, their project and region by artifacts.locations' rules. A pipeline job id is the SDK's
# "^[a-z][-a-z0-9]{0,127}$" (any case);
# a TensorBoard instance's id is the number Vertex AI gave it.
JOB = re.compile(rf"^projects/(?P<project>{PROJECT})/locations/(?P<location>{REGION})"
                 r"/pipelineJobs/(?P<job>(?i:[a-z][-a-z0-9]{0,127}))$")
TENSORBOARD = re.compile(rf"^projects/(?P<project>{PROJECT})/locations/(?P<location>{REGION})"
                         r"/tensorboards/(?P<id>[0-9]{1,20})$")
# An experiment name is the id of its Metadata context and of its TensorBoard experiment: 4-128 of [a-z0-9-]
# (a Metadata context id), the first a letter or digit (a TensorBoard experiment id).
EXPERIMENT = re.compile(r"^[a-z0-9][a-z0-9-]{3,127}$")
# The SDK derives two more ids from it: the run's context "<experiment>-<run>" (at most 128 - 7 characters) and its
# TensorBoard link artifact "<experiment>-<run>-tb-run" (4-128). Our run is the pipeline job id,
# "<pipeline name>-%Y%m%d%H%M%S": 31 characters for "jax-mlp-pipeline".
RUN_ARTIFACT_SUFFIX = "-tb-run"
LONGEST_RUN_ID = 128 - len(RUN_ARTIFACT_SUFFIX)
LONGEST_JOB_ID = len("jax-mlp-pipeline-YYYYMMDDHHMMSS")


def check_experiment(name: str, run: "str | None" = None) -> str:
    """A Vertex AI experiment name whose derived ids fit with run ``run`` (default: the longest job id we make)."""
    longest = LONGEST_RUN_ID - 1 - (len(run) if run is not None else LONGEST_JOB_ID)
    if not isinstance(name, str) or not EXPERIMENT.match(name) or len(name) > longest:
        raise UserError(
            f"experiment {name!r}: a Vertex AI experiment name is 4-{longest} lowercase letters, digits and hyphens, "
            f"starting with a letter or digit (Metadata ids are 4-128 characters, and the run's ids "
            f"'<experiment>-<job id>{RUN_ARTIFACT_SUFFIX}' must fit in 128 with a "
            f"{len(run) if run is not None else LONGEST_JOB_ID}-character job id)")
    return name


def check_job(job_resource_name: str) -> "re.Match":
    """A Vertex AI pipeline job's resource name (the track step runs on Vertex AI only)."""
    m = JOB.match(job_resource_name) if isinstance(job_resource_name, str) else None
    if not m:
        raise UserError(f"pipeline job {job_resource_name!r} is not a Vertex AI pipeline job "
                              "(projects/P/locations/L/pipelineJobs/J): experiment tracking runs on Vertex AI")
    return m


def check_tensorboard(resource: str) -> str:
    if not isinstance(resource, str) or not TENSORBOARD.match(resource):
        raise UserError(f"tensorboard {resource!r}: give a Vertex AI TensorBoard instance's resource name, "
                              "projects/PROJECT/locations/REGION/tensorboards/NUMBER (PROJECT a project id of 6-30 "
                              "of a-z, 0-9, '-' or a project number, REGION such as us-central1)")
    return resource


def _init(project: str, location: str) -> None:
    from google.cloud import aiplatform

    from platforms.vertex.endpoint import endpoint

    given, credentials = endpoint()
    # REST, the transport the Model Registry client uses too (platforms.vertex.model_registry)
    aiplatform.init(project=project, location=location, api_endpoint=given, api_transport="rest",
                    credentials=credentials)


def track_run(job_resource_name: str, experiment: str, params: dict, metrics: dict,
              tensorboard_dir: "str | Path | None" = None, tensorboard: str = "") -> str:
    """Log this pipeline run to ``experiment`` (and its event files to ``tensorboard``); returns the run's name."""
    from google.api_core import exceptions

    m = check_job(job_resource_name)
    run = m.group("job").lower()
    check_experiment(experiment, run)  # with this run's own job id: every id the SDK will derive fits
    if tensorboard:
        tb = TENSORBOARD.match(check_tensorboard(tensorboard))
        if tb.group("location") != m.group("location"):
            raise UserError(f"tensorboard {tensorboard} is in {tb.group('location')}, the pipeline runs in "
                                  f"{m.group('location')}: Vertex AI Experiments use a TensorBoard of their region")
    try:
        _init(m.group("project"), m.group("location"))
        if _already_logged(experiment, run):
            # An earlier attempt of this step did everything (a retry after its pod went): upload nothing twice.
            print(f"run {run} of experiment {experiment} already holds its metrics: nothing to do")
            return run
        if tensorboard:
            _upload_events(tensorboard_dir, tensorboard, experiment, run)
        _log(experiment, run, params, metrics)
    except exceptions.GoogleAPICallError as e:
        from artifacts.redaction import one_line

        raise UserError(f"Vertex AI refused: {e.code} {one_line(e.message)}") from None
    return run


def _already_logged(experiment: str, run: str) -> bool:
    """Whether experiment run ``run`` exists and has its metrics (logged last, after the TensorBoard upload)."""
    from google.cloud import aiplatform

    found = aiplatform.Experiment.get(experiment)
    existing = aiplatform.ExperimentRun.get(run, experiment=found) if found else None
    return bool(existing and existing.get_metrics())


def _upload_events(folder: "str | Path | None", tensorboard: str, experiment: str, run: str) -> None:
    """Upload the event files in ``folder`` as TensorBoard run ``run`` of TensorBoard experiment ``experiment``."""
    from google.cloud import aiplatform

    tb = TENSORBOARD.match(tensorboard)
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and ".tfevents." in p.name) if folder else []
    if not files:
        raise UserError(f"no TensorBoard event files in {folder}")
    # The uploader names a TensorBoard run after the event files' sub-folder: stage them under the run's name.
    staged = Path(tempfile.mkdtemp(prefix="tensorboard-upload-"))
    try:
        for path in files:
            target = staged / run / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        aiplatform.upload_tb_log(tensorboard_experiment_name=experiment, logdir=str(staged), tensorboard_id=tb.group("id"),
                                 project=tb.group("project"), location=tb.group("location"), verbosity=0)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # our own temp folder


def _log(experiment: str, run: str, params: dict, metrics: dict) -> None:
    from google.cloud import aiplatform

    found = aiplatform.Experiment.get_or_create(experiment)
    # The uploader above made the run (linked to its TensorBoard run); a retried step finds it too.
    experiment_run = aiplatform.ExperimentRun.get(run, experiment=found) or aiplatform.ExperimentRun.create(
        run, experiment=found)
    experiment_run.log_params({k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in params.items()})
    experiment_run.log_metrics({k: float(v) for k, v in metrics.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
    experiment_run.update_state(aiplatform.gapic.Execution.State.COMPLETE)
