"""Kubeflow Pipelines: submit a run, and keep recurring runs (schedules), with ``kfp.Client``."""

from __future__ import annotations

from pathlib import Path

from clusters.cron import to_kfp
from clusters.options import ClusterError

SCHEDULE_PREFIX = "jax-mlp-pipeline"


def _client(host: str):
    import warnings

    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        return kfp.Client(host=host)


def _call(host: str, what: str, fn, *args, **kwargs):
    """Run a client call; turn connection and API errors into one ``ClusterError`` line."""
    try:
        return fn(*args, **kwargs)
    except ClusterError:
        raise
    except Exception as e:  # urllib3 MaxRetryError, kfp_server_api ApiException, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClusterError(f"{what} failed at {host}: {type(e).__name__}: {first[:300]}") from None


def submit(package: str | Path, host: str, arguments: dict, experiment: str | None = None,
           pipeline_root: str | None = None, enable_caching: bool | None = None, run_name: str | None = None) -> tuple[str, str]:
    """Start a run of the compiled ``package``; returns ``(run_id, run_url)``."""
    client = _call(host, "connecting to Kubeflow Pipelines", _client, host)
    result = _call(
        host, "creating the run", client.create_run_from_pipeline_package,
        str(package), arguments=arguments, run_name=run_name, experiment_name=experiment,
        pipeline_root=pipeline_root, enable_caching=enable_caching,
    )
    return result.run_id, f"{host.rstrip('/')}/#/runs/details/{result.run_id}"


def schedule(package: str | Path, host: str, cron: str, arguments: dict, name: str, experiment: str | None = None,
             pipeline_root: str | None = None, enable_caching: bool | None = None, catchup: bool = False) -> str:
    """Create a recurring run (at most one at a time, no catch-up unless asked); returns its id."""
    kfp_cron = to_kfp(cron)
    client = _call(host, "connecting to Kubeflow Pipelines", _client, host)
    experiment_obj = _call(host, "finding the experiment", client.create_experiment, experiment or "Default")
    recurring = _call(
        host, "creating the recurring run", client.create_recurring_run,
        experiment_id=experiment_obj.experiment_id, job_name=_schedule_name(name), cron_expression=kfp_cron,
        max_concurrency=1, no_catchup=not catchup, params=arguments, pipeline_package_path=str(package),
        pipeline_root=pipeline_root, enable_caching=enable_caching,
    )
    return recurring.recurring_run_id


def _schedule_name(name: str) -> str:
    return name if name.startswith(SCHEDULE_PREFIX) else f"{SCHEDULE_PREFIX}-{name}"


def list_schedules(host: str) -> list[dict]:
    """Our recurring runs (display name starting with ``jax-mlp-pipeline``)."""
    client = _call(host, "connecting to Kubeflow Pipelines", _client, host)
    response = _call(host, "listing recurring runs", client.list_recurring_runs, page_size=100)
    return [
        {"id": r.recurring_run_id, "name": r.display_name, "status": r.status,
         "cron": r.trigger.cron_schedule.cron if r.trigger and r.trigger.cron_schedule else None}
        for r in response.recurring_runs or []
        if (r.display_name or "").startswith(SCHEDULE_PREFIX)
    ]


def pause(host: str, schedule_id: str) -> None:
    client = _call(host, "connecting to Kubeflow Pipelines", _client, host)
    _call(host, "pausing the recurring run", client.disable_recurring_run, schedule_id)


def delete(host: str, schedule_id: str) -> None:
    client = _call(host, "connecting to Kubeflow Pipelines", _client, host)
    _call(host, "deleting the recurring run", client.delete_recurring_run, schedule_id)
