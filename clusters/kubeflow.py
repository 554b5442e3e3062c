"""Kubeflow Pipelines: submit a run, and keep recurring runs (schedules), with ``kfp.Client``.

``Connection`` holds how to reach the API and who we are, for each kind of
deployment (Kubeflow docs, "Connect the SDK to the API"):

- standalone Kubeflow Pipelines on a port-forward: the host only;
- the full Kubeflow Platform from inside the cluster (a pod): the host
  ``http://ml-pipeline.kubeflow:8888`` and the pod's projected ServiceAccount
  token (``KF_PIPELINES_SA_TOKEN_PATH``, read by kfp's
  ``ServiceAccountTokenVolumeCredentials`` on every request), plus the profile
  namespace;
- the full Kubeflow Platform from a laptop: the auth proxy's session cookie
  (``--cookie-file``) or a bearer token (``--token-file``), plus the namespace;
- behind Google IAP: the OAuth client id (``--client-id``; kfp gets the token).

Secrets come from files or the environment, never from the command line, and
no message here ever contains them. Every failure is one ``ClusterError`` line
that says what to supply. Before a run or a schedule is created, the backend's
version is read from its healthz endpoint and an older backend than the compiled
spec needs is refused (``MIN_BACKEND``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from clusters.cron import to_kfp
from clusters.options import ClusterError

SCHEDULE_PREFIX = "jax-mlp-pipeline"
# kfp 2.17 compiles resource requests and limits as strings, which backends before 2.4 reject, and the
# backend compiles task retry policies into Argo retryStrategy only from 2.4.1 (2.4.0 drops them:
# backend/src/v2/compiler/argocompiler/container.go); it substitutes a placeholder (the run id: a
# checkpoint_root's folder, the TrainJob's name, the published run id) only from 2.5
# (backend/src/v2/driver/resolve.go).
MIN_BACKEND = "2.4.1"
FULL_BACKEND = "2.5.0"
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"


@dataclass(frozen=True)
class Connection:
    """How to reach a Kubeflow Pipelines API and as whom. Files hold the secrets; their contents stay in memory."""

    host: str
    namespace: str | None = None
    token_file: str | None = None
    cookie_file: str | None = None
    client_id: str | None = None
    ca_cert: str | None = None
    verify_tls: bool = True
    proxy: str | None = None

    def identity(self) -> str:
        """Who the requests claim to be, in words (never the secret itself)."""
        if self.token_file:
            return f"the bearer token in {self.token_file}"
        if self.cookie_file:
            return f"the session cookie in {self.cookie_file}"
        if self.client_id:
            return f"an IAP token for client id {self.client_id}"
        if os.environ.get(SA_TOKEN_ENV):
            return f"the ServiceAccount token at {os.environ[SA_TOKEN_ENV]} ({SA_TOKEN_ENV})"
        return "no identity"


def _connection(target: "str | Connection") -> Connection:
    return target if isinstance(target, Connection) else Connection(host=target)


def _secret(path: str, flag: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as e:
        raise ClusterError(f"{flag} {path}: cannot read it ({e.strerror or e})") from None
    if not value:
        raise ClusterError(f"{flag} {path} is empty")
    return value


def _client(conn: Connection):
    import warnings

    import kfp
    import kfp_server_api

    class Client(kfp.Client):
        """kfp.Client whose healthz call is tried once (kfp retries 5 times, 5 s apart, even on 401)."""

        backend: dict = {}  # the healthz answer, once read (kfp's constructor may read it)

        def get_kfp_healthz(self, sleep_duration: int = 5):
            response = self._healthz_api.healthz_service_get_healthz(_preload_content=False)
            try:
                self.backend = json.loads(response.data)
            except ValueError:
                self.backend = {}
            return kfp_server_api.V2beta1GetHealthzResponse(multi_user=self.backend.get("multi_user"),
                                                            pipeline_store=self.backend.get("pipeline_store"))

    if conn.ca_cert and not Path(conn.ca_cert).is_file():
        raise ClusterError(f"--ca-cert {conn.ca_cert}: no such file")
    kwargs: dict = {"host": conn.host, "proxy": conn.proxy, "ssl_ca_cert": conn.ca_cert}
    if not conn.verify_tls:
        kwargs["verify_ssl"] = False
    if conn.namespace:
        kwargs["namespace"] = conn.namespace
    if conn.token_file:
        kwargs["existing_token"] = _secret(conn.token_file, "--token-file")
    elif conn.client_id:
        kwargs["client_id"] = conn.client_id
    elif os.environ.get(SA_TOKEN_ENV):
        from kfp.client import ServiceAccountTokenVolumeCredentials

        _secret(os.environ[SA_TOKEN_ENV], SA_TOKEN_ENV)  # there and not empty: a clear line now, not a 401 later
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=os.environ[SA_TOKEN_ENV])
    if conn.cookie_file:
        kwargs["cookies"] = _secret(conn.cookie_file, "--cookie-file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        return Client(**kwargs)


def _reason(e: Exception) -> str:
    """The one cause worth printing from a urllib3 / kfp_server_api error chain, without headers or bodies' secrets."""
    text = str(getattr(e, "reason", "") or e)
    for marker, plain in (("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
                          ("Connection refused", "connection refused"),
                          ("Name or service not known", "unknown host"),
                          ("timed out", "timed out")):
        if marker in text:
            return plain
    return text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__


def _message(e, conn: Connection, what: str) -> str:
    status = getattr(e, "status", None)
    body = {}
    try:
        body = json.loads(getattr(e, "body", "") or "{}")
    except (TypeError, ValueError):
        pass
    detail = (body.get("message") or body.get("error") or getattr(e, "reason", "") or "") if isinstance(body, dict) else ""
    detail = " ".join(str(detail).split())[:200]
    if status == 401:
        return (f"{what} failed at {conn.host}: 401 Unauthorized with {conn.identity()}: supply an identity "
                "(--token-file with a bearer token, --cookie-file with the auth proxy's session cookie, --client-id "
                f"behind IAP, or {SA_TOKEN_ENV} in a pod)")
    if status == 403:
        where = f"namespace {conn.namespace}" if conn.namespace else "the default namespace (give --namespace, your profile)"
        return f"{what} failed at {conn.host}: 403 Forbidden: {conn.identity()} may not use {where}: {detail}"
    if status is not None and status >= 400:
        hint = " (give --namespace, your Kubeflow profile)" if "namespace" in detail.lower() and not conn.namespace else ""
        return f"{what} failed at {conn.host}: {status} {detail}{hint}"
    if type(e).__name__ == "DefaultCredentialsError" and conn.client_id:
        return (f"{what} failed at {conn.host}: --client-id needs Google credentials to get an IAP token: run "
                "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a service account key")
    reason = _reason(e)
    if reason == "certificate verify failed":
        return (f"{what} failed at {conn.host}: TLS certificate verify failed: give the cluster's CA with --ca-cert FILE"
                + (f" (given: {conn.ca_cert}, which did not verify it)" if conn.ca_cert else ""))
    if reason in ("connection refused", "unknown host", "timed out"):
        return f"{what} failed at {conn.host}: cannot reach it ({reason}; is the port-forward or the proxy running?)"
    return f"{what} failed at {conn.host}: {type(e).__name__}: {reason}"


def _call(conn: Connection, what: str, fn, *args, **kwargs):
    """Run a client call; turn connection and API errors into one ``ClusterError`` line."""
    try:
        return fn(*args, **kwargs)
    except ClusterError:
        raise
    except Exception as e:  # urllib3 MaxRetryError / SSLError, kfp_server_api ApiException, ...
        raise ClusterError(_message(e, conn, what)) from None


def connect(target: "str | Connection", check_version: bool = False, warn=print):
    """A ``kfp.Client`` for ``target``; with ``check_version``, refuse a backend older than the spec needs."""
    conn = _connection(target)
    client = _call(conn, "connecting to Kubeflow Pipelines", _client, conn)
    if check_version:
        if not client.backend:
            _call(conn, "reading the backend's version", client.get_kfp_healthz)
        check_backend(client.backend, conn.host, warn)
    return client


def check_backend(healthz: dict, host: str, warn=print) -> str:
    """The backend's version from its healthz answer; refuses (or warns about) one older than this spec needs."""
    from packaging.version import InvalidVersion, Version

    tag = str(healthz.get("tag_name") or "unknown")
    try:
        version = Version(tag.lstrip("v"))
    except InvalidVersion:
        warn(f"warning: {host} does not say its Kubeflow Pipelines version (healthz tag_name {tag!r}); "
             f"this pipeline needs {FULL_BACKEND} or later")
        return tag
    if version < Version(MIN_BACKEND):
        raise ClusterError(f"{host} runs Kubeflow Pipelines {tag}; this pipeline needs {FULL_BACKEND} or later "
                           f"(backends before {MIN_BACKEND} drop the train step's retry policy; before 2.4 they reject "
                           "the resource requests kfp 2.17 writes as strings)")
    if version < Version(FULL_BACKEND):
        warn(f"warning: {host} runs Kubeflow Pipelines {tag}: before {FULL_BACKEND} the backend does not substitute "
             "the run id placeholder, so checkpoint_root and --replicas (Kubeflow Trainer) cannot be used and the "
             f"published manifest carries no run id; upgrade to {FULL_BACKEND} or later")
    return tag


def submit(package: str | Path, target: "str | Connection", arguments: dict, experiment: str | None = None,
           pipeline_root: str | None = None, enable_caching: bool | None = None, run_name: str | None = None,
           warn=print) -> tuple[str, str]:
    """Start a run of the compiled ``package``; returns ``(run_id, run_url)``."""
    conn = _connection(target)
    client = connect(conn, check_version=True, warn=warn)
    result = _call(
        conn, "creating the run", client.create_run_from_pipeline_package,
        str(package), arguments=arguments, run_name=run_name, experiment_name=experiment,
        namespace=conn.namespace, pipeline_root=pipeline_root, enable_caching=enable_caching,
    )
    return result.run_id, f"{conn.host.rstrip('/')}/#/runs/details/{result.run_id}"


def schedule(package: str | Path, target: "str | Connection", cron: str, arguments: dict, name: str,
             experiment: str | None = None, pipeline_root: str | None = None, enable_caching: bool | None = None,
             catchup: bool = False, warn=print) -> str:
    """Create a recurring run (at most one at a time, no catch-up unless asked); returns its id."""
    kfp_cron = to_kfp(cron)
    conn = _connection(target)
    client = connect(conn, check_version=True, warn=warn)
    experiment_obj = _call(conn, "finding the experiment", client.create_experiment, experiment or "Default",
                           namespace=conn.namespace)
    recurring = _call(
        conn, "creating the recurring run", client.create_recurring_run,
        experiment_id=experiment_obj.experiment_id, job_name=_schedule_name(name), cron_expression=kfp_cron,
        max_concurrency=1, no_catchup=not catchup, params=arguments, pipeline_package_path=str(package),
        pipeline_root=pipeline_root, enable_caching=enable_caching,
    )
    return recurring.recurring_run_id


def _schedule_name(name: str) -> str:
    return name if name.startswith(SCHEDULE_PREFIX) else f"{SCHEDULE_PREFIX}-{name}"


def list_schedules(target: "str | Connection") -> list[dict]:
    """Our recurring runs (display name starting with ``jax-mlp-pipeline``)."""
    conn = _connection(target)
    client = connect(conn)
    response = _call(conn, "listing recurring runs", client.list_recurring_runs, page_size=100,
                     namespace=conn.namespace)
    return [
        {"id": r.recurring_run_id, "name": r.display_name, "status": r.status,
         "cron": r.trigger.cron_schedule.cron if r.trigger and r.trigger.cron_schedule else None}
        for r in response.recurring_runs or []
        if (r.display_name or "").startswith(SCHEDULE_PREFIX)
    ]


def pause(target: "str | Connection", schedule_id: str) -> None:
    conn = _connection(target)
    _call(conn, "pausing the recurring run", connect(conn).disable_recurring_run, schedule_id)


def delete(target: "str | Connection", schedule_id: str) -> None:
    conn = _connection(target)
    _call(conn, "deleting the recurring run", connect(conn).delete_recurring_run, schedule_id)
