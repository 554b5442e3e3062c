"""Vertex AI Pipelines: submit a ``PipelineJob`` and keep ``PipelineJobSchedule`` s.

google-cloud-aiplatform is an optional extra: ``pip install 'jax-mlp-pipeline[vertex]'``.
``JAX_MLP_VERTEX_ENDPOINT`` names another API endpoint, as for the steps that call
Vertex AI (``platforms.vertex.model_registry``, ``platforms.vertex.experiments``).
"""

from __future__ import annotations

import os
from pathlib import Path

from platforms.cron import validate
from mlp_core.errors import UserError

SCHEDULE_PREFIX = "jax-mlp-pipeline"


def _aiplatform(credentials=None):
    """The SDK, pointed at ``JAX_MLP_VERTEX_ENDPOINT`` when set; default credentials looked up unless given."""
    try:
        from google.cloud import aiplatform
    except ImportError:
        raise UserError(
            "google-cloud-aiplatform is not installed; install it with: pip install 'jax-mlp-pipeline[vertex]'"
        ) from None
    from platforms.vertex.endpoint import ENDPOINT_ENV, endpoint

    if credentials is not None and not os.environ.get(ENDPOINT_ENV):
        return aiplatform  # the caller's credentials, the default endpoint: nothing to look up
    given, found = endpoint()
    credentials = credentials or found
    if given:  # another API endpoint (Private Service Connect; the tests' stand-in), as the steps take it
        aiplatform.init(api_endpoint=given, api_transport="rest", credentials=credentials)
    return aiplatform


def build_job(package: str | Path, project: str, region: str, pipeline_root: str, arguments: dict,
              enable_caching: bool | None = None, display_name: str = SCHEDULE_PREFIX, credentials=None):
    """The ``PipelineJob`` of the compiled ``package`` (no network call)."""
    if not str(pipeline_root).startswith("gs://"):
        raise UserError(f"Vertex AI needs a gs:// pipeline root, got {pipeline_root!r}")
    if not project or not region:
        raise UserError("Vertex AI needs --project and --region")
    check_project_and_region(project, region)
    aiplatform = _aiplatform(credentials)
    return aiplatform.PipelineJob(
        display_name=display_name, template_path=str(package), pipeline_root=pipeline_root,
        parameter_values=arguments, enable_caching=enable_caching, project=project, location=region,
        credentials=credentials,
    )


def build_schedule(job, name: str, credentials=None):
    """The ``PipelineJobSchedule`` of ``job`` (no network call until ``.create``)."""
    display_name = name if name.startswith(SCHEDULE_PREFIX) else f"{SCHEDULE_PREFIX}-{name}"
    return _aiplatform(credentials).PipelineJobSchedule(pipeline_job=job, display_name=display_name, credentials=credentials)


def check_project_and_region(project: str, region: str) -> None:
    """A project id (or number) and a region by their documented rules (``artifacts.locations``), before any call."""
    import re

    from artifacts.locations import PROJECT, REGION

    if not re.fullmatch(PROJECT, project):
        raise UserError(f"--project {project[:80]!r} is not a Google Cloud project id (6-30 of a-z, 0-9, '-', a letter "
                           "first, not ending in '-') or project number")
    if not re.fullmatch(REGION, region):
        raise UserError(f"--region {region[:80]!r} is not a Google Cloud region (such as us-central1)")


def _call(what: str, fn, *args, **kwargs):
    from artifacts.redaction import one_line

    try:
        return fn(*args, **kwargs)
    except Exception as e:  # google.api_core / google.auth errors, as one line, credentials redacted
        raise UserError(f"{what} failed: {type(e).__name__}: {one_line(str(e) or type(e).__name__)[:300]}") from None


def submit(job, service_account: str | None = None) -> str:
    """Submit ``job``; returns its console URL."""
    _call("submitting the Vertex AI pipeline job", job.submit, service_account=service_account)
    return job._dashboard_uri()


def schedule(job, cron: str, name: str, service_account: str | None = None):
    """Create a schedule of ``job`` (five-field cron, optional ``TZ=``), one run at a time."""
    cron = validate(cron)
    schedule_obj = build_schedule(job, name, credentials=job.credentials)
    _call("creating the Vertex AI schedule", schedule_obj.create, cron=cron, max_concurrent_run_count=1,
          service_account=service_account)
    return schedule_obj


def list_schedules(project: str, region: str) -> list[dict]:
    check_project_and_region(project, region)
    aiplatform = _aiplatform()
    schedules = _call("listing Vertex AI schedules", aiplatform.PipelineJobSchedule.list,
                      filter=f'display_name:"{SCHEDULE_PREFIX}"', project=project, location=region)
    return [{"id": s.resource_name, "name": s.display_name, "status": str(s.state), "cron": s.cron} for s in schedules]


def pause(project: str, region: str, schedule_id: str) -> None:
    s = _call("finding the schedule", _aiplatform().PipelineJobSchedule.get, schedule_id, project=project, location=region)
    _call("pausing the schedule", s.pause)


def delete(project: str, region: str, schedule_id: str) -> None:
    s = _call("finding the schedule", _aiplatform().PipelineJobSchedule.get, schedule_id, project=project, location=region)
    _call("deleting the schedule", s.delete)
