"""TfServingStandIn: TF Serving's REST API on loopback, serving real SavedModels with TensorFlow.

No TF Serving binary runs here (it is not on PyPI). This stand-in answers the
REST endpoints a client of TF Serving (or of KServe's TensorFlow runtime, which
runs TF Serving) uses, as https://www.tensorflow.org/tfx/serving/api_rest
documents them, and computes the answers with the SavedModel itself:

- models are loaded from base paths the way TF Serving loads them: the
  highest-numbered version folder under the base path (``<base>/1/``); a base
  path without one serves nothing;
- ``GET /v1/models/<name>``: the version status;
- ``GET /v1/models/<name>[/versions/<v>]/metadata``: ``GetModelMetadataResponse`` as JSON,
  ``{"model_spec": {...}, "metadata": {"signature_def": {"signature_def": {<name>: SignatureDef}}}}``:
  every signature of the loaded MetaGraphDef (``serve``), printed with the options TF Serving uses
  (proto field names kept, fields at their defaults printed, so int64 sizes are strings: ``"-1"``);
- ``POST /v1/models/<name>[/versions/<v>]:predict`` with ``signature_name``
  (default ``serving_default``) and ``instances`` (row format) or ``inputs``
  (columnar); a signature with several outputs answers one object per instance
  in the row format, ``{"outputs": {...}}`` in the columnar one;
- errors as TF Serving writes them: ``{"error": "..."}`` with 404 for an unknown
  model (``Servable not found for request: Latest(<name>)``), 400 for a body or
  tensor it cannot use.

A test may set ``tamper`` to ``f(status, reply) -> (status, reply)``: each predict
answer passes through it (a broken or hostile server: NaN probabilities, a class
index out of range, a missing field), so a client's checks of the answer are tested.

Not modelled: gRPC, the model config file, batching, version labels.

Mirrors: tensorflow/serving ``tensorflow_serving/model_servers/http_rest_api_handler.cc`` as its REST API
document describes it (the predict and status answers were not checked against that source: unverified beyond the
document). The metadata answer follows the source, read on 2026-11-30: ``http_rest_api_handler.cc`` and
``http_rest_api_util.cc`` at commit b6b8cca6 (``ProcessModelMetadataRequest``; ``ToJsonString`` prints
``model_spec`` and the unpacked ``SignatureDefMap`` with ``preserve_proto_field_names`` and
``always_print_primitive_fields``) and ``servables/tensorflow/get_model_metadata_impl.cc`` at 1b86c9e7 (all of
the bundle's ``signature_def``, ``model_spec`` = the servable's name and version).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from loopback_json_server import LoopbackJsonServer

PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
STATUS = re.compile(r"^/v1/models/([^/:]+)$")
METADATA = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?/metadata$")


def _versions(base: Path) -> list[int]:
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()) if base.is_dir() else []


def _json(key: str, value):
    """A tensor's values as TF Serving writes them: strings as UTF-8 text, ``{"b64": ...}`` for a ``*_bytes`` output.

    https://www.tensorflow.org/tfx/serving/api_rest#encoding_binary_values
    """
    import base64

    if isinstance(value, list):
        return [_json(key, v) for v in value]
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()} if key.endswith("_bytes") else value.decode("utf-8")
    return value


def _signature_defs(folder: Path) -> dict:
    """The ``serve`` MetaGraphDef's SignatureDefs in ``folder/saved_model.pb``, as protobuf's JSON printer writes them
    with ``preserve_proto_field_names`` and ``always_print_primitive_fields`` (TF Serving's ``ToJsonString``)."""
    from google.protobuf.json_format import MessageToDict
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes())
    (graph,) = [g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags]
    return {key: MessageToDict(signature, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            for key, signature in graph.signature_def.items()}


class TfServingStandIn(LoopbackJsonServer):
    def __init__(self, models: dict[str, "str | Path"]):
        from mlp_core.data.tf import tf

        self.tf = tf
        self.tamper = None  # f(status, reply) -> (status, reply), applied to predict answers
        self.loaded = {}
        self.signature_defs = {}  # name -> the SignatureDefs of its loaded version, as the metadata API prints them
        for name, base in models.items():
            versions = _versions(Path(base))
            if versions:  # TF Serving serves the newest version it finds
                folder = Path(base) / str(versions[-1])
                self.loaded[name] = (versions[-1], tf.saved_model.load(str(folder)))
                self.signature_defs[name] = _signature_defs(folder)
        super().__init__()

    def answer(self, method: str, path: str, headers, raw: bytes):
        self.requests[-1]["body"] = raw
        if method == "GET" and METADATA.match(path):
            name, version = METADATA.match(path).groups()
            if name not in self.loaded or (version and int(version) != self.loaded[name][0]):
                what = f"Specific({name}, {version})" if version else f"Latest({name})"
                return 404, {"error": f"Servable not found for request: {what}"}
            return 200, {"model_spec": {"name": name, "signature_name": "", "version": str(self.loaded[name][0])},
                         "metadata": {"signature_def": {"signature_def": self.signature_defs[name]}}}
        if method == "GET":
            m = STATUS.match(path)
            if not m or m.group(1) not in self.loaded:
                return 404, {"error": f"Servable not found for request: Latest({m.group(1) if m else ''})"}
            return 200, {"model_version_status": [{"version": str(self.loaded[m.group(1)][0]), "state": "AVAILABLE",
                                                   "status": {"error_code": "OK", "error_message": ""}}]}
        m = PREDICT.match(path)
        if method != "POST" or not m:
            return 404, {"error": f"Malformed request: {method} {path}"}
        name, version = m.group(1), m.group(2)
        if name not in self.loaded or (version and int(version) != self.loaded[name][0]):
            what = f"Specific({name}, {version})" if version else f"Latest({name})"
            return 404, {"error": f"Servable not found for request: {what}"}
        status, reply = self.predict(self.loaded[name][1], raw)
        return self.tamper(status, reply) if self.tamper else (status, reply)

    def predict(self, model, raw: bytes) -> tuple[int, dict]:
        tf = self.tf
        try:
            request = json.loads(raw)
        except ValueError as e:
            return 400, {"error": f"JSON Parse error: {e}"}
        if not isinstance(request, dict):
            return 400, {"error": "JSON Value: not an object"}
        signature_name = request.get("signature_name", "serving_default")
        if signature_name not in model.signatures:
            return 400, {"error": f"Serving signature name: \"{signature_name}\" not found in signature def"}
        signature = model.signatures[signature_name]
        specs = signature.structured_input_signature[1]
        row = "instances" in request
        if row == ("inputs" in request):
            return 400, {"error": "Missing 'inputs' or 'instances' key"}
        given = request["instances"] if row else request["inputs"]
        if len(specs) == 1 and not isinstance(given, dict) and not (row and given and isinstance(given[0], dict)):
            given = {next(iter(specs)): given}
        elif row:
            given = {key: [instance[key] for instance in given] for key in specs}
        try:
            tensors = {key: tf.constant(value, dtype=specs[key].dtype) for key, value in given.items()}
            outputs = signature(**tensors)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            return 400, {"error": " ".join(str(e).split())[:500]}
        values = {key: _json(key, value.numpy().tolist()) for key, value in outputs.items()}
        if not row:
            return 200, {"outputs": values if len(values) > 1 else next(iter(values.values()))}
        count = len(next(iter(values.values())))
        if len(values) == 1:
            return 200, {"predictions": next(iter(values.values()))}
        return 200, {"predictions": [{key: value[i] for key, value in values.items()} for i in range(count)]}
