"""RecordingKfpApi: a stand-in for a Kubeflow Pipelines API server, on loopback.

No cluster runs in these tests. This server answers the KFP v2beta1 REST
endpoints that ``kfp.Client`` uses to submit runs and manage recurring runs,
records every request, and decodes each body with kfp-server-api's own models
(so a request the real server would reject as malformed fails here too).

Options make it behave like the deployments teams run:

- ``version``: what ``/apis/v2beta1/healthz`` reports as ``tag_name`` (the real
  server writes that JSON by hand, with ``commit_sha``, ``tag_name``,
  ``multi_user`` and ``pipeline_store``: ``backend/src/apiserver/main.go``);
- ``token`` / ``cookie``: the full Kubeflow Platform's auth proxy: a request
  without ``Authorization: Bearer <token>`` or the session cookie is answered
  401, before it reaches the API;
- ``namespaces``: multi-user mode: the identity may use only these profile
  namespaces; an experiment in another, or a list without a namespace, is
  refused as the API server refuses it (403 ``PermissionDenied`` from its
  SubjectAccessReview; 400 ``Invalid input`` without a namespace);
- ``tls``: ``(certfile, keyfile)``: HTTPS with that certificate (tests make a
  self-signed CA and a server certificate with ``cryptography``);
- ``echo``: an HTTP status every API call but healthz is answered with, by a
  careless auth proxy or gateway that quotes the credentials it rejected (the
  request's ``Authorization`` and ``Cookie`` headers) in its error body, as
  ``error`` and ``message`` of the API's own error shape: what the client must
  never print.

It also answers requests in absolute form (``GET http://host/apis/...``), as
the HTTP proxy a client is told to use receives them, and records the host.
"""

import itertools
import json
import re
from urllib.parse import parse_qs

import kfp_server_api

from loopback_json_server import LoopbackJsonServer

_MODELS = {
    ("POST", "/apis/v2beta1/experiments"): "V2beta1Experiment",
    ("POST", "/apis/v2beta1/runs"): "V2beta1Run",
    ("POST", "/apis/v2beta1/recurringruns"): "V2beta1RecurringRun",
}


def _filter(query: str) -> dict:
    """The JSON ``filter`` query parameter of a list call, decoded."""
    values = parse_qs(query).get("filter")
    return json.loads(values[0]) if values else {}


class _Body:
    """What ``ApiClient.deserialize`` reads: an object with ``.data``."""

    def __init__(self, data: str):
        self.data = data


class RecordingKfpApi(LoopbackJsonServer):
    def __init__(self, port: int = 0, version: str = "2.5.0", token: "str | None" = None, cookie: "str | None" = None,
                 namespaces: "tuple[str, ...] | None" = None, tls: "tuple[str, str] | None" = None,
                 echo: "int | None" = None):
        self.version = version
        self.echo = echo
        self.token = token
        self.cookie = cookie
        self.namespaces = namespaces
        self.experiments: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self._ids = itertools.count(1)
        self._api = kfp_server_api.ApiClient()
        super().__init__(port)
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = self.url.replace("http://", "https://", 1)

    def decoded(self, method: str, path: str) -> list:
        """Bodies of the recorded ``method path`` requests, as kfp-server-api models."""
        return [r["model"] for r in self.requests if r["method"] == method and r["path"] == path]

    def _authorized(self, headers) -> bool:
        if self.token is None and self.cookie is None:
            return True
        return ((self.token is not None and headers.get("Authorization") == f"Bearer {self.token}")
                or (self.cookie is not None and self.cookie in (headers.get("Cookie") or "").split("; ")))

    def _namespace_refusal(self, method: str, path: str, query: str, body: dict | None):
        """Multi-user mode: what the API server answers for a namespace this identity cannot use (None: allowed)."""
        api = "/apis/v2beta1"
        if self.namespaces is None:
            return None
        namespace = None
        if path == f"{api}/experiments" and method == "POST":
            namespace = (body or {}).get("namespace")
        elif path in (f"{api}/experiments", f"{api}/recurringruns", f"{api}/runs") and method == "GET":
            namespace = (parse_qs(query).get("namespace") or [None])[0]
        else:
            return None
        if not namespace:
            return 400, {"error": "Invalid input error: In multi-user mode, a namespace is required", "code": 3,
                         "message": "Invalid input error: In multi-user mode, a namespace is required"}
        if namespace not in self.namespaces:
            message = (f"PermissionDenied: User 'user@example.com' is not authorized with reason: (request: "
                       f"&ResourceAttributes{{Namespace:{namespace},Verb:create,Group:pipelines.kubeflow.org,"
                       f"Resource:experiments}})")
            return 403, {"error": message, "code": 7, "message": message}
        return None

    def _respond(self, method: str, path: str, query: str, body: dict | None):
        api = "/apis/v2beta1"
        if path == f"{api}/healthz":
            return 200, {"commit_sha": "stand-in", "tag_name": self.version, "multi_user": self.namespaces is not None,
                         "pipeline_store": "database"}
        refused = self._namespace_refusal(method, path, query, body)
        if refused:
            return refused
        if path == f"{api}/experiments" and method == "GET":
            matches = list(self.experiments.values())
            for predicate in _filter(query).get("predicates", []):
                # protojson accepts both spellings of a field; kfp.Client sends stringValue
                wanted = predicate.get("string_value", predicate.get("stringValue"))
                if predicate.get("key") == "display_name":
                    matches = [e for e in matches if e["display_name"] == wanted]
            return 200, {"experiments": matches, "total_size": len(matches)}
        if path == f"{api}/experiments" and method == "POST":
            experiment = {**body, "experiment_id": f"exp-{next(self._ids)}", "storage_state": "AVAILABLE"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if m := re.fullmatch(rf"{api}/experiments/([^/]+)", path):
            return (200, self.experiments[m.group(1)]) if m.group(1) in self.experiments else (404, {"error": "not found"})
        if path == f"{api}/runs" and method == "POST":
            return 200, {**body, "run_id": f"run-{next(self._ids)}", "state": "PENDING"}
        if path == f"{api}/recurringruns" and method == "POST":
            run = {**body, "recurring_run_id": f"rr-{next(self._ids)}", "status": "ENABLED"}
            self.recurring_runs[run["recurring_run_id"]] = run
            return 200, run
        if path == f"{api}/recurringruns" and method == "GET":
            runs = list(self.recurring_runs.values())
            return 200, {"recurringRuns": runs, "total_size": len(runs)}  # the API's own spelling
        if (m := re.fullmatch(rf"{api}/recurringruns/([^/:]+):disable", path)) and method == "POST":
            if m.group(1) not in self.recurring_runs:
                return 404, {"error": "not found"}
            self.recurring_runs[m.group(1)]["status"] = "DISABLED"
            return 200, {}
        if (m := re.fullmatch(rf"{api}/recurringruns/([^/]+)", path)) and method == "DELETE":
            return (200, {}) if self.recurring_runs.pop(m.group(1), None) else (404, {"error": "not found"})
        return 404, {"error": f"the stand-in does not answer {method} {path}"}

    def answer(self, method: str, target: str, headers, raw: bytes):
        via_proxy = None
        if target.startswith(("http://", "https://")):  # absolute-form: we are the client's HTTP proxy
            from urllib.parse import urlsplit

            parts = urlsplit(target)
            via_proxy, target = parts.netloc, parts.path + (f"?{parts.query}" if parts.query else "")
        path, _, query = target.partition("?")
        text = raw.decode()
        body = json.loads(text) if text else None
        record = self.requests[-1]
        record.update(path=path, query=query, body=body, model=None, via_proxy=via_proxy,
                      authorization=headers.get("Authorization"), cookie=headers.get("Cookie"))
        model = _MODELS.get((method, path))
        if model:  # decode as the real server's generated client would: malformed bodies raise
            record["model"] = self._api.deserialize(_Body(text), model)
        if self.echo and path != "/apis/v2beta1/healthz":  # a proxy quoting what it refused
            text = (f"rejected {method} {target}: Authorization: {headers.get('Authorization')}; "
                    f"Cookie: {headers.get('Cookie')}")
            return self.echo, {"error": text, "code": 7, "message": text}
        if not self._authorized(headers):  # the auth proxy, in front of the API
            return 401, {"error": "Unauthorized", "code": 16, "message": "Unauthorized"}
        return self._respond(method, path, query, body)
