"""VertexModelRegistryStandIn: Vertex AI's Model Registry REST API (v1 ModelService), on loopback.

No Google Cloud project is reachable from these tests. This stand-in answers
the ModelService calls ``platforms.vertex.model_registry`` makes through the real
``google-cloud-aiplatform`` GAPIC client (REST transport), as the v1 REST
reference documents them, records every request, and keeps the registry's
rules that the publish logic depends on:

- ``POST /v1/{parent}/models:upload`` is a long-running operation (answered
  done) whose response names the model and its new ``modelVersionId``; with
  ``modelId`` it creates the model (409 ``ALREADY_EXISTS`` if it exists), with
  ``parentModel`` it adds a version (404 if the parent does not exist); a ``modelId``
  is at most 63 of ``[a-z0-9_-]``, the first neither a digit nor '-' (400
  ``INVALID_ARGUMENT`` otherwise: aiplatform_v1 ``UploadModelRequest.model_id``); the
  ``artifactUri`` must be a ``gs://`` folder holding ``saved_model.pb`` (read
  from the gcp-storage-emulator), as the prebuilt TensorFlow containers need;
  the first version gets the alias ``default``;
- ``GET /v1/{name}`` with ``models/M``, ``models/M@<version id>`` or
  ``models/M@<alias>`` (404 ``NOT_FOUND`` for an unknown model, version or alias);
- ``POST /v1/{name}:mergeVersionAliases``: an alias names one version of a
  model at a time, so adding it to one version takes it from the others;
  ``-alias`` removes it; aliases must match ``[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]``.

Errors are ``{"error": {"code", "message", "status"}}``. Not modelled:
deployment, endpoints, evaluations, IAM, and operation polling (operations are
answered done).

Mirrors: googleapis ``google/cloud/aiplatform/v1/model_service.proto`` (the request and resource types);
the service's behaviour is closed source: unverified beyond its REST reference.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import unquote

from loopback_json_server import LoopbackJsonServer

# google/cloud/aiplatform_v1/types/model_service.py, UploadModelRequest.model_id: "up to 63 characters, and valid
# characters are [a-z0-9_-]. The first character cannot be a number or hyphen."
MODEL_ID = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
MODEL = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/models/([^/@:]+)(?:@([^/:]+))?(:mergeVersionAliases)?$")
UPLOAD = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+)/models:upload$")


def _error(code: int, status: str, message: str) -> tuple[int, dict]:
    return code, {"error": {"code": code, "message": message, "status": status}}


class VertexModelRegistryStandIn(LoopbackJsonServer):
    def __init__(self):
        self.models: dict[str, list[dict]] = {}  # model resource name -> its versions, in order
        self.lock = threading.Lock()
        super().__init__()

    def answer(self, method: str, path: str, headers, raw: bytes):
        body = json.loads(raw) if raw else None
        path = unquote(path.split("?")[0])
        self.requests[-1].update(path=path, body=body)
        with self.lock:
            return self.handle(method, path, body)

    def aliases(self, name: str) -> dict[str, list[str]]:
        """version id -> its aliases, for a test to look at."""
        return {v["versionId"]: list(v["versionAliases"]) for v in self.models.get(name, [])}

    # ---- the API

    def handle(self, method: str, path: str, body: "dict | None") -> tuple[int, dict]:
        if method == "POST" and (m := UPLOAD.match(path)):
            return self._upload(m.group(1), body or {})
        m = MODEL.match(path)
        if not m:
            return _error(404, "NOT_FOUND", f"the stand-in does not answer {method} {path}")
        name = f"{m.group(1)}/models/{m.group(2)}"
        if name not in self.models:
            return _error(404, "NOT_FOUND", f'Model "{name}" is not found.')
        version = self._version(name, m.group(3))
        if version is None:
            return _error(404, "NOT_FOUND", f'Model "{name}@{m.group(3)}" is not found.')
        if method == "GET" and not m.group(4):
            return 200, version
        if method == "POST" and m.group(4):
            return self._merge(name, version, (body or {}).get("versionAliases") or [])
        return _error(405, "METHOD_NOT_ALLOWED", f"{method} {path}")

    def _version(self, name: str, selector: "str | None") -> "dict | None":
        versions = self.models[name]
        if selector is None:
            return next((v for v in versions if "default" in v["versionAliases"]), versions[-1])
        return next((v for v in versions if v["versionId"] == selector or selector in v["versionAliases"]), None)

    def _upload(self, parent: str, body: dict) -> tuple[int, dict]:
        from artifacts import storage

        model, model_id, parent_model = body.get("model") or {}, body.get("modelId"), body.get("parentModel")
        if bool(model_id) == bool(parent_model):
            return _error(400, "INVALID_ARGUMENT", "exactly one of model_id (a new model) and parent_model (a new "
                                                   "version) is expected here")
        if model_id and not MODEL_ID.match(model_id):
            return _error(400, "INVALID_ARGUMENT", f"model_id {model_id!r}: up to 63 characters of [a-z0-9_-], the "
                                                   "first not a number or hyphen")
        name = parent_model or f"{parent}/models/{model_id}"
        if model_id and name in self.models:
            return _error(409, "ALREADY_EXISTS", f'Model "{name}" already exists.')
        if parent_model and parent_model not in self.models:
            return _error(404, "NOT_FOUND", f'Parent model "{parent_model}" is not found.')
        artifact = model.get("artifactUri", "")
        if not artifact.startswith("gs://") or "saved_model.pb" not in storage.list_names(artifact):
            return _error(400, "INVALID_ARGUMENT", f"Model directory {artifact} is expected to contain exactly one of: "
                                                   "[saved_model.pb, saved_model.pbtxt].")
        if not (model.get("containerSpec") or {}).get("imageUri"):
            return _error(400, "INVALID_ARGUMENT", "container_spec.image_uri is required")
        versions = self.models.setdefault(name, [])
        version_id = str(len(versions) + 1)
        versions.append({**model, "name": name, "versionId": version_id,
                         "versionAliases": ["default"] if version_id == "1" else []})
        response = {"@type": "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse", "model": name,
                    "modelVersionId": version_id}
        return 200, {"name": f"{parent}/operations/{len(self.requests)}", "done": True, "response": response}

    def _merge(self, name: str, version: dict, aliases: list[str]) -> tuple[int, dict]:
        for alias in aliases:
            plain = alias[1:] if alias.startswith("-") else alias
            if not ALIAS.match(plain) or plain == "default" and alias.startswith("-"):
                return _error(400, "INVALID_ARGUMENT", f"Invalid version alias: {alias}")
        for alias in aliases:
            if alias.startswith("-"):
                version["versionAliases"] = [a for a in version["versionAliases"] if a != alias[1:]]
                continue
            for other in self.models[name]:  # one version per alias
                other["versionAliases"] = [a for a in other["versionAliases"] if a != alias]
            version["versionAliases"].append(alias)
        return 200, version
