"""Vertex AI Model Registry as a publish target: ``publish_uri = projects/P/locations/L/models/M``.

A blessed model becomes a new version of ``M`` (its SavedModel in Cloud Storage, the prebuilt TensorFlow serving
container, metrics and provenance as JSON in its description); the champion is the version holding the alias
``champion``, moved only when the new version still beats it. Through the GAPIC ``ModelServiceClient`` (REST).
"""

from __future__ import annotations

import json

from artifacts import locations
from mlp_core.errors import UserError
from artifacts.redaction import one_line  # what a server says may quote the credentials it refused

CHAMPION = "champion"
# Vertex AI's prebuilt TensorFlow 2 prediction container (CPU); it serves a SavedModel's serving_default.
SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


def is_registry(publish_uri: str) -> bool:
    """True for a Model Registry model name; a text starting ``projects/`` that is not a valid one is refused.

    ``artifacts.locations.check_registry_model`` holds the rule (aiplatform_v1 ``UploadModelRequest.model_id``:
    at most 63 of ``[a-z0-9_-]``, not starting with a digit or hyphen), so a bad name ends in one line
    (``UserError``) and never becomes a local folder ``projects/...``.
    """
    if not locations.is_resource_name(publish_uri):
        return False
    locations.check_registry_model(publish_uri, "--publish-uri")
    return True


def _parts(publish_uri: str) -> dict:
    """``project``, ``location`` and ``model`` of a valid Model Registry model name (else ``UserError``)."""
    return locations.check_registry_model(publish_uri, "--publish-uri").groupdict()


def _client(publish_uri: str):
    from google.cloud import aiplatform_v1

    from platforms.vertex.endpoint import endpoint

    location = _parts(publish_uri)["location"]  # the name is checked before credentials are looked for
    given, credentials = endpoint()
    return aiplatform_v1.ModelServiceClient(client_options={"api_endpoint": given or f"{location}-aiplatform.googleapis.com"},
                                            transport="rest", credentials=credentials)


def _parent(publish_uri: str) -> str:
    return publish_uri.rsplit("/models/", 1)[0]


def read_champion(publish_uri: str) -> "dict | None":
    """The champion version's record (``version``, ``metrics``, ...), or None when the model or alias is not there."""
    from google.api_core import exceptions

    try:
        model = _client(publish_uri).get_model(name=f"{publish_uri}@{CHAMPION}")
    except exceptions.NotFound:
        return None
    except exceptions.GoogleAPICallError as e:
        raise UserError(f"the champion cannot be read from {publish_uri}: {one_line(e.message)}") from None
    try:
        record = json.loads(model.version_description)
        record["metrics"]["test_accuracy"] = float(record["metrics"]["test_accuracy"])
    except (ValueError, TypeError, KeyError):
        raise UserError(f"{publish_uri}@{CHAMPION} (version {model.version_id}) was not published by this "
                            "pipeline (no metrics in its description): move the alias or remove it") from None
    return {**record, "version": model.version_id}


def publish(model_dir, model_uri: str, publish_uri: str, test_accuracy: float, test_loss, image: str, run_id: str,
            tolerance: float, beats, provenance: "dict | None" = None) -> "tuple[str, bool, str]":
    """Upload ``model_dir`` (in Cloud Storage at ``model_uri``) as a new version; move ``champion`` if it still wins.

    Returns ``(version id or "", promoted, reason)``; ``beats(test_accuracy, champion)`` is the blessing rule.
    ``provenance``: more of the version's record (its data, validation files: ``components.publish``); its
    ``metrics`` join the test numbers.
    """
    from google.api_core import exceptions

    from mlp_core.export import SAVED_MODEL_DIR, SERVING_VERSION
    from mlp_core.model_io import content_hash

    if not str(model_uri).startswith("gs://"):
        raise UserError(f"a Model Registry version points at its model in Cloud Storage; the model is at "
                            f"{model_uri} (publish to the registry from a pipeline run on Vertex AI, or give a gs:// "
                            "Model)")
    beats_champion, reason = beats(test_accuracy, read_champion(publish_uri))
    if not beats_champion:
        return "", False, f"not published: {reason}"
    client = _client(publish_uri)
    model_id = _parts(publish_uri)["model"]
    try:
        client.get_model(name=publish_uri)
        exists = True
    except exceptions.NotFound:
        exists = False
    given = dict(provenance or {})
    record = {**given, "metrics": {"test_accuracy": test_accuracy, "test_loss": test_loss, **given.get("metrics", {})},
              "content_sha256": content_hash(model_dir), "image": image, "pipeline_run_id": run_id,
              "model_uri": str(model_uri)}
    version = {
        "display_name": model_id,
        "artifact_uri": f"{str(model_uri).rstrip('/')}/{SAVED_MODEL_DIR}/{SERVING_VERSION}",
        "container_spec": {"image_uri": SERVING_IMAGE},
        "version_description": json.dumps(record, sort_keys=True),
        "labels": {"managed-by": "jax-mlp-pipeline"},
    }
    request = {"parent": _parent(publish_uri), "model": version}
    if exists:
        request["parent_model"] = publish_uri
    else:
        request["model_id"] = model_id
    try:
        uploaded = client.upload_model(request=request).result(timeout=1800)
        version_id = uploaded.model_version_id
        # The alias moves only if this version still beats the champion of this moment (another run may have
        # promoted one meanwhile); the registry has no compare-and-swap, so the window is this read and the merge.
        still, reason = beats(test_accuracy, read_champion(publish_uri))
        if not still:
            return version_id, False, f"version {version_id} uploaded; {CHAMPION} not moved: {reason}"
        client.merge_version_aliases(name=f"{publish_uri}@{version_id}", version_aliases=[CHAMPION])
    except exceptions.GoogleAPICallError as e:
        raise UserError(f"the Model Registry refused the upload to {publish_uri}: {one_line(e.message)}") from None
    return version_id, True, f"version {version_id} of {publish_uri}; {CHAMPION} moved to it ({reason})"
