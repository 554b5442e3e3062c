"""Kubeflow Pipelines: submit a run, and keep recurring runs (schedules), with ``kfp.Client``.

``Connection``: how to reach the API and who we are (the host alone, a pod's ServiceAccount token, an auth proxy's
cookie or bearer token from a file, or Google IAP's client id). Secrets come from files, are registered for redaction
and never printed; every failure is one ``UserError`` line; a backend older than ``MIN_BACKEND`` is refused.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from platforms.cron import to_kfp
from platforms.checks import check_dns1123_label
from mlp_core.errors import UserError
from artifacts import redaction, storage
from artifacts.bounded_http import HttpError, bound_pool

SCHEDULE_PREFIX = "jax-mlp-pipeline"
# kfp 2.17 compiles resource requests and limits as strings, which backends before 2.4 reject, and the
# backend compiles task retry policies into Argo retryStrategy only from 2.4.1 (2.4.0 drops them); it substitutes
# a placeholder (the run id: a checkpoint_root's folder, the TrainJob's name, the published run id) only from 2.5.
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

    def __post_init__(self) -> None:
        check_url(self.host, "--host")
        if self.proxy is not None:
            check_url(self.proxy, "--proxy")
        if self.namespace is not None:
            # A Kubeflow profile's namespace is a Kubernetes Namespace, whose name is a DNS-1123 label.
            check_dns1123_label(self.namespace, "--namespace")

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


def check_url(url: str, flag: str) -> str:
    """An ``http(s)://HOST[:PORT][/PATH]`` URL without userinfo, its port in 1-65535; else one line, unprinted secrets.

    Userinfo (``user:password@``) is refused rather than stripped: the client never sends it (urllib3's
    ``PoolManager.urlopen`` sends only the request URI to the host, and its ``ProxyManager`` takes proxy credentials
    from ``proxy_headers`` only, urllib3 2.x ``poolmanager.py``), RFC 3986 §3.2.1 deprecates ``user:password`` in a
    URI, and a URL is printed in every error line. The port is RFC 3986 §3.2.3's, bounded by TCP's 16 bits.
    """
    text = str(url)
    parts = urlsplit(text)
    if "@" in parts.netloc:
        redaction.remember(parts.password, parts.username and parts.netloc.rpartition("@")[0])
        raise UserError(f"{flag} {redaction.redact(text)} carries a user name or password: the client never sends "
                           "it, and it would be printed; give the identity with --token-file, --cookie-file or "
                           "--client-id" + (" (a proxy that needs credentials is not supported)" if flag == "--proxy" else ""))
    if re.search(r"[\x00-\x20\x7f]", text) or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{flag} {redaction.one_line(text, 120)!r} is not an http:// or https:// URL with a host "
                           "(e.g. http://localhost:8080)")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise UserError(f"{flag} {text}: the port must be 1-65535")
    return text


def _connection(target: "str | Connection") -> Connection:
    return target if isinstance(target, Connection) else Connection(host=target)


def _read_secret(path: str, flag: str) -> str:
    """The file's text without its final line ending; refused when empty, unreadable or several lines."""
    try:
        raw = storage.read_bytes(path, storage.RECORD)
    except OSError as e:
        raise UserError(f"{flag}: {e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{flag} {path} is not text (UTF-8)") from None
    redaction.remember(text.strip())
    for ending in ("\n", "\r"):  # one final LF or CRLF is the file's line ending, not part of the value
        text = text[: -len(ending)] if text.endswith(ending) else text
    value = text.strip(" \t")
    redaction.remember(value)
    if not value.strip():
        raise UserError(f"{flag} {path} is empty")
    return value


# RFC 6265 §4.2.1: cookie-string = cookie-pair *( ";" SP cookie-pair ); cookie-pair = cookie-name "=" cookie-value,
# cookie-name a token (RFC 9110 §5.6.2 tchar), cookie-value *cookie-octet or DQUOTE *cookie-octet DQUOTE,
# cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E (no CTLs, whitespace, DQUOTE, comma, ';', '\').
_COOKIE_NAME = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_COOKIE_VALUE = r"(?:[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*|\"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*\")"
COOKIE_STRING = re.compile(rf"{_COOKIE_NAME}={_COOKIE_VALUE}(?:; {_COOKIE_NAME}={_COOKIE_VALUE})*")
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" (a Kubernetes token is a JWT).
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _is_cookie_jar(text: str) -> bool:
    """The Netscape cookie-jar format (curl -c, wget --save-cookies, browser exports): tab-separated, 7 fields."""
    lines = [line for line in text.splitlines() if line.strip()]
    return (text.lstrip().startswith(("# Netscape HTTP Cookie File", "# HTTP Cookie File", "#HttpOnly_"))
            or any(len(line.split("\t")) == 7 for line in lines))


def _cookie(path: str) -> str:
    """The ``Cookie`` header value in ``path``, checked by RFC 6265's grammar; its values never printed."""
    value = _read_secret(path, "--cookie-file")
    redaction.remember_cookies(value)
    for line in value.splitlines():
        redaction.remember_cookies(line.strip())
        for field in line.split("\t"):
            redaction.remember(field.strip())
    if _is_cookie_jar(value):
        raise UserError(f"--cookie-file {path} is a Netscape cookie-jar file; give the Cookie header's value instead: "
                           "one line NAME=VALUE, the auth proxy's cookie (the jar's 6th and 7th fields)")
    if "\r" in value or "\n" in value:
        raise UserError(f"--cookie-file {path} holds more than one line (or a CR/LF inside): write the Cookie header's "
                           "value as one line, NAME=VALUE[; NAME2=VALUE2]")
    if not COOKIE_STRING.fullmatch(value):
        raise UserError(f"--cookie-file {path} is not a Cookie header value NAME=VALUE[; NAME2=VALUE2] (RFC 6265 "
                           "§4.2.1: no 'Cookie:' prefix; a value without spaces, quotes inside, commas, ';' or '\\')")
    return value


def _token(path: str, flag: str) -> str:
    """The bearer token in ``path``, checked by RFC 6750's b64token grammar; never printed."""
    value = _read_secret(path, flag)
    for part in value.split():
        redaction.remember(part)
    if value.lower().startswith("bearer "):
        raise UserError(f"{flag} {path} starts with 'Bearer': the file holds the token alone (the client adds "
                           "'Authorization: Bearer ')")
    if not BEARER_TOKEN.fullmatch(value):
        raise UserError(f"{flag} {path} is not one bearer token (RFC 6750 §2.1: one line of letters, digits, "
                           "'-', '.', '_', '~', '+', '/', then '=' padding; no spaces or control characters)")
    return value


def _secret(path: str, flag: str) -> str:
    """The secret in ``path`` (a cookie file or a token file), checked by its format."""
    return _cookie(path) if flag == "--cookie-file" else _token(path, flag)


def check_identity(conn: Connection) -> None:
    """Read and check every secret file ``conn`` names (no network): a bad file is one line before any work."""
    if conn.token_file:
        _secret(conn.token_file, "--token-file")
    if conn.cookie_file:
        _secret(conn.cookie_file, "--cookie-file")
    if not conn.token_file and not conn.client_id and os.environ.get(SA_TOKEN_ENV):
        _secret(os.environ[SA_TOKEN_ENV], SA_TOKEN_ENV)
    if conn.ca_cert and not Path(conn.ca_cert).is_file():
        raise UserError(f"--ca-cert {conn.ca_cert}: no such file")


def _client(conn: Connection):
    import warnings

    import kfp
    import kfp_server_api

    class Client(kfp.Client):
        """kfp.Client whose healthz call is tried once (kfp retries 5 times, 5 s apart, even on 401), every answer
        bounded (``artifacts.bounded_http``: its constructor makes the pool, then may ask healthz first)."""

        backend: dict = {}  # the healthz answer, once read (kfp's constructor may read it)

        def get_kfp_healthz(self, sleep_duration: int = 5):
            bound_pool(self._healthz_api.api_client.rest_client.pool_manager)  # one ApiClient serves every API
            response = self._healthz_api.healthz_service_get_healthz(_preload_content=False)
            try:
                self.backend = json.loads(response.data)
            except ValueError:
                self.backend = {}
            return kfp_server_api.V2beta1GetHealthzResponse(multi_user=self.backend.get("multi_user"),
                                                            pipeline_store=self.backend.get("pipeline_store"))

    if conn.ca_cert and not Path(conn.ca_cert).is_file():
        raise UserError(f"--ca-cert {conn.ca_cert}: no such file")
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
        client = Client(**kwargs)
    bound_pool(client._healthz_api.api_client.rest_client.pool_manager)
    return client


def _reason(e: Exception) -> str:
    """The one cause worth printing from a urllib3 / kfp_server_api error chain, without headers or bodies' secrets."""
    text = redaction.redact(getattr(e, "reason", "") or e)
    for marker, plain in (("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
                          ("Connection refused", "connection refused"),
                          ("Name or service not known", "unknown host"),
                          ("timed out", "timed out")):
        if marker in text:
            return plain
    return redaction.one_line(text.strip().splitlines()[0], 200) if text.strip() else type(e).__name__


def _message(e, conn: Connection, what: str) -> str:
    if isinstance(e, HttpError):
        return f"{what} failed at {conn.host}: {e}"
    status = getattr(e, "status", None)
    body = {}
    try:
        body = json.loads(getattr(e, "body", "") or "{}")
    except (TypeError, ValueError):
        pass
    detail = (body.get("message") or body.get("error") or getattr(e, "reason", "") or "") if isinstance(body, dict) else ""
    detail = redaction.one_line(detail, 200)  # a server's text: a proxy may quote the credentials it refused
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
    """Run a client call; turn connection and API errors into one ``UserError`` line."""
    try:
        return fn(*args, **kwargs)
    except UserError:
        raise
    except Exception as e:  # urllib3 MaxRetryError / SSLError, kfp_server_api ApiException, ...
        raise UserError(redaction.one_line(_message(e, conn, what), 600)) from None


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
        raise UserError(f"{host} runs Kubeflow Pipelines {tag}; this pipeline needs {FULL_BACKEND} or later "
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
