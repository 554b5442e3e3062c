"""Publish: copy a blessed model to ``<publish_uri>/<version>/`` and move ``LATEST`` to it.

    python -m components.publish --model DIR --publish-uri gs://bucket/mnist-mlp --test-accuracy 0.9691

Layout at the publish location::

    LATEST                              one line: the champion's version
    20261126T184620Z-3f9a1c2b7d4e/      params.npz, config.json, dataset.json, history.json,
                                        saved_model/, manifest.json (written last)

The version folder is complete (manifest last) before ``LATEST`` changes, and
``LATEST`` is replaced in one write, so a reader never sees half a model: an
interrupted publish leaves the previous champion in force.
"""

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from kfp import dsl
from kfp.dsl import Input, Model

from components._cli import exit_on_error

LATEST = "LATEST"
MANIFEST = "manifest.json"


def content_hash(model_dir: "str | Path") -> str:
    """sha256 over the model's files (relative names and bytes), in a fixed order."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def read_champion(publish_uri: str) -> "dict | None":
    """The manifest of the model ``LATEST`` points to, or None when nothing is published."""
    from components import storage

    latest = storage.join(publish_uri, LATEST)
    if not storage.exists(latest):
        return None
    version = storage.read_bytes(latest).decode().strip()
    manifest = json.loads(storage.read_bytes(storage.join(publish_uri, version, MANIFEST)))
    return manifest


def publish_model(
    model: "str | Path",
    publish_uri: str,
    test_accuracy: float,
    test_loss: "float | None" = None,
    image: str = "",
    run_id: str = "",
    now: "datetime | None" = None,
) -> str:
    """Publish ``model``; returns its version (UTC timestamp + short content hash)."""
    from components import storage
    from mlp_core.model_io import load_model

    _, config, dataset, history = load_model(model)  # refuses a broken model before anything is written
    digest = content_hash(model)
    version = f"{(now or datetime.now(timezone.utc)):%Y%m%dT%H%M%SZ}-{digest[:12]}"
    target = storage.join(publish_uri, version)
    files = storage.upload_tree(model, target)
    manifest = {
        "version": version,
        "content_sha256": digest,
        "published_at": (now or datetime.now(timezone.utc)).isoformat(),
        "metrics": {"test_accuracy": test_accuracy, "test_loss": test_loss, "epochs": len(history)},
        "config": config.to_dict(),
        "dataset": {"name": dataset["name"], "version": dataset["version"], "shards_sha256": dataset["shards"]},
        "image": image,
        "pipeline_run_id": run_id,
        "files": files,
    }
    storage.write_bytes(storage.join(target, MANIFEST), (json.dumps(manifest, indent=2) + "\n").encode())
    # The commit point: only now does a reader (or the next run's blessing) see this version.
    storage.write_bytes(storage.join(publish_uri, LATEST), (version + "\n").encode())
    return version


def publish(
    model: Input[Model],
    publish_uri: str,
    test_accuracy: float,
    test_loss: float,
    image: str = "",
    run_id: str = "",
) -> str:
    """Publish the blessed model and move LATEST to it (components.publish)."""
    from components.publish import publish_model

    version = publish_model(model.path, publish_uri, test_accuracy, test_loss, image, run_id)
    print(f"published {version} to {publish_uri}")
    return version


def component(base_image: str):
    """``publish`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(publish, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.publish",
        description="Publish a Model artifact to <publish-uri>/<version>/ (local folder or gs://) and move LATEST to it.",
    )
    p.add_argument("--model", required=True, help="Model artifact folder (from components.train)")
    p.add_argument("--publish-uri", required=True, help="publish location: a folder or gs://bucket/prefix")
    p.add_argument("--test-accuracy", type=float, required=True, help="the model's test accuracy (from components.evaluate)")
    p.add_argument("--test-loss", type=float, default=None, help="the model's test loss")
    p.add_argument("--image", default="", help="image tag the model was trained with, for the manifest")
    p.add_argument("--run-id", default="", help="pipeline run id, for the manifest")
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    version = publish_model(args.model, args.publish_uri, args.test_accuracy, args.test_loss, args.image, args.run_id)
    print(f"published {version} to {args.publish_uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
