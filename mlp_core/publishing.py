"""Publishing a model: ``<publish_uri>/<version>/`` and the ``LATEST`` pointer to the champion.

Layout at the publish location::

    LATEST                              one line: the champion's version
    20261126T184620Z-3f9a1c2b7d4e/      params.npz, config.json, dataset.json, history.json,
                                        saved_model/1/, manifest.json (written last)

The version folder is complete (manifest last) before ``LATEST`` changes, and
``LATEST`` is replaced in one write, so a reader never sees half a model: an
interrupted publish leaves the previous champion in force. ``LATEST`` moves by
compare-and-swap against the champion read at that moment (see ``publish_model``).
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from mlp_core.blessing import DEFAULT_TOLERANCE, ChampionError

LATEST = "LATEST"
MANIFEST = "manifest.json"


def content_hash(model_dir: "str | Path") -> str:
    """sha256 over the model's listed files (relative names and bytes), in a fixed order; the commit marker aside."""
    from mlp_core import locations
    from mlp_core.outputs import read_marker

    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    # The files the marker lists (each proven inside the model), not whatever else lies in the folder.
    for name in sorted(Path(n) for n in read_marker(model_dir, "model")["files"]):
        digest.update(name.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(locations.member(model_dir, name.as_posix()).read_bytes()).digest())
    return digest.hexdigest()


def _manifest(publish_uri: str, version: str) -> dict:
    """The validated manifest of ``version``; ``ChampionError`` when it is missing, not JSON or out of range."""
    import re

    from mlp_core import storage
    from mlp_core.schemas import PUBLISH_MANIFEST, VERSION_PATTERN, SchemaError, loads, validate

    latest = storage.join(publish_uri, LATEST)
    if not re.match(VERSION_PATTERN, version):
        raise ChampionError(f"{latest} names {version[:80]!r}, not a published version; fix or remove {latest}")
    where = storage.join(publish_uri, version, MANIFEST)
    try:
        manifest = validate(loads(storage.read_bytes(where), where), PUBLISH_MANIFEST, where)
    except (SchemaError, storage.StorageError) as e:
        raise ChampionError(f"the champion cannot be read, so nothing is blessed against it: {e}; "
                            f"fix it or remove {latest}") from None
    if manifest["version"] != version:
        raise ChampionError(f"{where} is of version {manifest['version']}, {latest} says {version}; fix or remove {latest}")
    return manifest


def read_champion(publish_uri: str) -> "dict | None":
    """The validated manifest of the model ``LATEST`` points to, or None when nothing is published.

    For a Vertex AI Model Registry target, the record of the version holding the ``champion`` alias
    (``mlp_core.model_registry``).
    """
    from mlp_core import model_registry, storage

    if model_registry.is_registry(publish_uri):
        return model_registry.read_champion(publish_uri)

    latest = storage.join(publish_uri, LATEST)
    if not storage.exists(latest):
        return None
    try:
        version = storage.read_bytes(latest).decode().strip()
    except UnicodeDecodeError:
        raise ChampionError(f"{latest} is not text; fix or remove it") from None
    return _manifest(publish_uri, version)


def _beats(test_accuracy: float, champion: "dict | None", tolerance: float) -> "tuple[bool, str]":
    """May a model of ``test_accuracy`` replace ``champion``? The blessing rule, without its threshold."""
    from mlp_core.blessing import bless

    return bless(test_accuracy, float("-inf"), tolerance, champion["metrics"]["test_accuracy"] if champion else None)


class Published(NamedTuple):
    version: str
    promoted: bool  # LATEST moved to it
    reason: str


def publish_model(
    model: "str | Path",
    publish_uri: str,
    test_accuracy: float,
    test_loss: "float | None" = None,
    image: str = "",
    run_id: str = "",
    now: "datetime | None" = None,
    tolerance: float = DEFAULT_TOLERANCE,
    model_uri: "str | None" = None,
) -> Published:
    """Publish ``model`` as a version (UTC timestamp + short content hash) and move ``LATEST`` to it.

    The champion is read again at publish time, not taken from evaluate (which may
    have run long before, or been served from a cache): ``LATEST`` moves only if the
    model still beats the champion it replaces, and the move is a compare-and-swap
    (``if_generation_match`` on Cloud Storage, a file lock in a folder), so two runs
    publishing at once cannot roll a better champion back.

    ``publish_uri`` may name a Vertex AI Model Registry model (``projects/P/locations/L/models/M``): the model
    becomes a new version there (``model_uri``: where ``model`` lies in Cloud Storage), and the ``champion``
    alias takes the place of ``LATEST`` (``mlp_core.model_registry``).
    """
    from mlp_core import model_registry, storage
    from mlp_core.blessing import check_fraction, check_loss
    from mlp_core.model_io import load_model
    from mlp_core.outputs import check_apart
    from mlp_core.schemas import dumps

    from mlp_core import locations

    locations.check_publish_target(publish_uri, "--publish-uri")
    if model_uri:
        locations.check_location(model_uri, "--model-uri")
    test_accuracy = check_fraction("--test-accuracy", test_accuracy)
    test_loss = check_loss("--test-loss", test_loss)
    check_fraction("--blessing-tolerance", tolerance)
    if model_registry.is_registry(publish_uri):
        load_model(model)  # refuses a broken model before anything is sent
        version, promoted, reason = model_registry.publish(
            model, model_uri or str(model), publish_uri, test_accuracy, test_loss, image, run_id, tolerance,
            lambda accuracy, champion: _beats(accuracy, champion, tolerance))
        return Published(version, promoted, reason)
    check_apart({"--model": model}, {"--publish-uri": publish_uri})
    _, config, dataset, history = load_model(model)  # refuses a broken model before anything is written
    beats, reason = _beats(test_accuracy, read_champion(publish_uri), tolerance)
    if not beats:
        return Published("", False, f"not published: {reason}")
    digest = content_hash(model)
    version = f"{(now or datetime.now(timezone.utc)):%Y%m%dT%H%M%SZ}-{digest[:12]}"
    target = storage.join(publish_uri, version)
    files = _upload_model(model, target)
    manifest = {
        "version": version,
        "content_sha256": digest,
        "published_at": (now or datetime.now(timezone.utc)).isoformat(),
        "metrics": {"test_accuracy": test_accuracy, "test_loss": test_loss, "epochs": len(history)},
        "config": config.to_dict(),
        "dataset": {"name": dataset["name"], "version": dataset["version"], "shards_sha256": dataset["shards"]},
        "image": image,
        # Set by the project image (Dockerfile): which locked dependencies trained and published this model.
        "image_lock_sha256": os.environ.get("JAX_MLP_LOCK_SHA256", ""),
        "pipeline_run_id": run_id,
        "files": files,
    }
    storage.write_bytes(storage.join(target, MANIFEST), dumps(manifest).encode())
    # The commit point: only now does a reader (or the next run's blessing) see this version.
    promote = _promote_remote if storage.is_remote(publish_uri) else _promote_local
    promoted, reason = promote(publish_uri, version, test_accuracy, tolerance)
    return Published(version, promoted, reason)


def _upload_model(model: "str | Path", target: str) -> list[str]:
    """Copy the files ``model``'s marker lists (each proven inside it), then the marker; nothing else in the folder."""
    from mlp_core import locations, storage
    from mlp_core.outputs import COMPLETE, read_marker

    names = [*read_marker(model, "model")["files"], COMPLETE]
    for name in names:
        storage.write_bytes(locations.join(target, name), locations.member(model, name).read_bytes())
    return names


def _promote_local(publish_uri: str, version: str, test_accuracy: float, tolerance: float) -> "tuple[bool, str]":
    """Move ``LATEST`` under a lock (filelock: fcntl on this machine), deciding against the champion read inside it."""
    from filelock import FileLock

    from mlp_core import storage

    with FileLock(str(Path(publish_uri) / f".{LATEST}.lock"), timeout=600):
        beats, reason = _beats(test_accuracy, read_champion(publish_uri), tolerance)
        if beats:
            storage.write_bytes(storage.join(publish_uri, LATEST), (version + "\n").encode())
        return beats, reason


def _promote_remote(publish_uri: str, version: str, test_accuracy: float, tolerance: float,
                    attempts: int = 50) -> "tuple[bool, str]":
    """Move ``LATEST`` by compare-and-swap (Cloud Storage's object generation, S3's ETag); re-decide after every lost race."""
    import random
    import time

    from mlp_core import storage

    latest = storage.join(publish_uri, LATEST)
    for attempt in range(attempts):
        current, generation = storage.read_versioned(latest)
        champion = _manifest(publish_uri, current.decode().strip()) if current is not None else None
        beats, reason = _beats(test_accuracy, champion, tolerance)
        if not beats:
            return False, reason
        try:
            storage.write_if_unchanged(latest, (version + "\n").encode(), generation)
            return True, reason
        except storage.PreconditionFailed:
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))  # another publisher moved it: read again
    raise storage.StorageError(f"{latest} kept changing: {attempts} compare-and-swap attempts lost")
