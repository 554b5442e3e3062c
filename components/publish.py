"""Publish: copy a blessed model to ``<publish_uri>/<version>/`` and move ``LATEST`` to it (compare-and-swap).

    python -m components.publish --model DIR --publish-uri gs://bucket/mnist-mlp --test-metrics test_metrics.json

The numbers come from evaluate's ``--metrics`` file (never typed again, but with ``--metrics-by-hand``).
"""

import argparse
import os
import random
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model

from artifacts import locations, storage
from artifacts.locations import check_flags, check_publish_target, check_segment
from artifacts.outputs import COMPLETE, check_apart, read_marker
from artifacts.schemas import PUBLISH_MANIFEST, TEST_METRICS, VERSION_PATTERN, dumps, excerpt, loads, validate
from components._cli import exit_on_error, loss_note
from components._step import add_parameter_flags, descriptions
from mlp_core.blessing import DEFAULT_TOLERANCE, bless, check_fraction, check_loss, test_set_sha256
from mlp_core.errors import UserError
from mlp_core.model_io import content_hash, load_model
from platforms.options import StepPolicy
from platforms.vertex import model_registry

# On a cluster: never cached, since it moves LATEST, state that is not one of its inputs.
CLUSTER = StepPolicy("500m", "1", "1Gi", "2Gi", cacheable=False)


def publish(
    model: Input[Model],
    test_metrics: Input[Metrics],
    statistics: Input[Artifact],
    data_schema: Input[Artifact],
    publish_uri: str,
    blessing_tolerance: float = 0.002,
    image: str = "",
    run_id: str = "",
    champion_version: str = "",
) -> str:
    """Publish the blessed model and move LATEST to it if the champion is still the one evaluate compared it with (components.publish).

    Args:
        model: Model artifact folder (from components.train)
        test_metrics: the model's test metrics, whose test_accuracy and test_loss evaluate blessed it with (from
            components.evaluate)
        statistics: the data's statistics (from components.validate), kept with the version: the next runs' drift
            baseline
        data_schema: the schema the data was validated against (from components.validate), kept with the version
        publish_uri: publish location, a folder or gs://bucket/prefix, or a Vertex AI Model Registry model
            (projects/P/locations/L/models/M)
        blessing_tolerance: for a champion published since evaluate ran, scored on the same test split: LATEST moves
            if the test accuracy is at least its accuracy minus this
        image: image tag the model was trained with, for the manifest
        run_id: pipeline run id, for the manifest
        champion_version: the champion evaluate scored beside the model on its test split (from components.evaluate;
            empty for none); LATEST moves only while it names this version (or one scored on the same test split)
    """
    from components.publish import metrics_line, publish_model, report
    from mlp_core.data.validation import SCHEMA_FILE, STATISTICS_FILE
    from components.publish import metrics_from_artifact

    # evaluate logs its numbers in its Metrics artifact's metadata (components.evaluate), no file; the backend
    # hands that metadata to this input (Kubeflow: MLMD's custom properties, backend/src/v2/metadata/converter.go
    # toRuntimeArtifact; kfp.local: kfp/local/executor_input_utils.py)
    from platforms.vertex.model_registry import is_registry

    tested = metrics_from_artifact(test_metrics.metadata, "the evaluate step's metrics")
    # A folder version keeps copies of validate's files (read at their paths); a Model Registry version records
    # where they are (the artifacts' URIs: gs:// on Vertex AI), as it records model.uri, what the version points at.
    validation = ({STATISTICS_FILE: statistics.uri, SCHEMA_FILE: data_schema.uri} if is_registry(publish_uri)
                  else {STATISTICS_FILE: statistics.path, SCHEMA_FILE: data_schema.path})
    published = publish_model(model.path, publish_uri, tested.test_accuracy, tested.test_loss, image, run_id,
                              tolerance=blessing_tolerance, model_uri=model.uri, champion_version=champion_version,
                              validation=validation)
    print(metrics_line(tested, "from the evaluate step's metrics"))
    print(report(published, publish_uri))
    return published.version


def metrics_line(tested: "TestMetrics", source: str) -> str:
    """One line: the numbers published with the model, what the loss is, and where they came from."""
    return (f"test accuracy {tested.test_accuracy:.4f}, test loss {tested.test_loss:.4f} "
            f"({loss_note(tested.num_classes)}), {source}")


def report(published: "Published", publish_uri: str) -> str:
    """One line: what was published, and whether LATEST moved."""
    if not published.version:
        return published.reason
    if model_registry.is_registry(publish_uri):
        return (f"published version {published.version} to {publish_uri}; alias {model_registry.CHAMPION} "
                + (f"moved to it ({published.reason.rsplit('(', 1)[-1].rstrip(')')})" if published.promoted
                   else f"not moved: {published.reason.split(': ', 1)[-1]}"))
    if published.promoted:
        return f"published {published.version} to {publish_uri}; LATEST moved to it ({published.reason})"
    return f"published {published.version} to {publish_uri}; LATEST not moved: {published.reason}"


def component(base_image: str):
    """``publish`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(publish, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.publish",
        description="Publish a Model artifact as a new version at --publish-uri (<publish-uri>/<version>/ in a folder, "
        "gs:// or s3://, or a version of a Vertex AI Model Registry model) and make it the champion (LATEST).",
    )
    texts = descriptions(publish)
    p.add_argument("--model", required=True, help=texts["model"])
    p.add_argument("--test-metrics", default=None, metavar="FILE",
                   help="the JSON file evaluate wrote with --metrics: the numbers it blessed the model with, the champion "
                   "it scored (for --champion-version) and the test split (checked against the model's)")
    hand = p.add_argument_group("numbers typed by hand", "instead of --test-metrics; refused without --metrics-by-hand "
                                "(a typo would move the champion)")
    hand.add_argument("--metrics-by-hand", action="store_true", help="publish with --test-accuracy and --test-loss")
    hand.add_argument("--test-accuracy", type=float, default=None, help="the model's test accuracy")
    hand.add_argument("--test-loss", type=float, default=None,
                      help=f"the model's test loss ({loss_note()})")
    p.add_argument("--model-uri", default=None, help="where the same model lies in Cloud Storage (gs://), for a Model "
                   "Registry publish target, whose versions point at it")
    p.add_argument("--statistics", default=None, help=texts["statistics"] + " (validate's --statistics)")
    p.add_argument("--schema", default=None, help=texts["data_schema"] + " (validate's --output-schema)")
    add_parameter_flags(p, publish)
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    check_publish_target(args.publish_uri, "--publish-uri")
    check_flags({"--model": args.model, "--model-uri": args.model_uri, "--statistics": args.statistics,
                 "--schema": args.schema, "--test-metrics": args.test_metrics},
                local=("--model", "--statistics", "--schema", "--test-metrics"))
    from mlp_core.data.validation import SCHEMA_FILE, STATISTICS_FILE

    validation = {name: path for name, path in ((STATISTICS_FILE, args.statistics), (SCHEMA_FILE, args.schema)) if path}
    if args.run_id:
        check_segment(args.run_id, "--run-id", "run id")
    tested, source = _test_metrics(args)
    published = publish_model(args.model, args.publish_uri, tested.test_accuracy, tested.test_loss, args.image,
                              args.run_id, tolerance=args.blessing_tolerance, model_uri=args.model_uri,
                              champion_version=tested.champion_version, validation=validation,
                              test_set=tested.test_set)
    print(metrics_line(tested, source))
    print(report(published, args.publish_uri))
    return 0


def _test_metrics(args: argparse.Namespace) -> "tuple[TestMetrics, str]":
    """The numbers to publish with and where they came from: evaluate's file, or typed with --metrics-by-hand."""
    typed = [flag for flag, value in (("--test-accuracy", args.test_accuracy), ("--test-loss", args.test_loss))
             if value is not None]
    if args.test_metrics:
        if typed or args.metrics_by_hand:
            raise UserError(f"--test-metrics gives evaluate's numbers, {(typed or ['--metrics-by-hand'])[0]} types "
                             "them again: give one or the other")
        tested = read_evaluation(args.test_metrics)
        if args.champion_version and args.champion_version != tested.champion_version:
            scored = f"champion {tested.champion_version}" if tested.champion_version else "no champion"
            raise UserError(f"--champion-version {args.champion_version}, but {args.test_metrics} says evaluate "
                             f"compared the model with {scored}: leave --champion-version out")
        return tested, f"from {args.test_metrics}"
    if not args.metrics_by_hand:
        if typed:
            raise UserError(f"{typed[0]} is typed by hand: give --test-metrics FILE (what evaluate --metrics wrote), "
                             "or add --metrics-by-hand to publish numbers typed by hand")
        raise UserError("--test-metrics FILE is required: the JSON evaluate --metrics wrote "
                         "(or --metrics-by-hand with --test-accuracy and --test-loss)")
    missing = [flag for flag in ("--test-accuracy", "--test-loss") if flag not in typed]
    if missing:
        raise UserError(f"--metrics-by-hand needs {' and '.join(missing)}")
    return TestMetrics(args.test_accuracy, args.test_loss, args.champion_version, None, None), "typed by hand"


LATEST = "LATEST"
# Beside the versions, evaluate's records of models that lost to the champion (components.new_data.record_candidate).
CANDIDATES = "candidates"
MANIFEST = "manifest.json"


def _manifest(publish_uri: str, version: str) -> dict:
    """The validated manifest of ``version``; ``UserError`` when it is missing, not JSON or out of range."""
    latest = storage.join(publish_uri, LATEST)
    if not re.match(VERSION_PATTERN, version):
        raise UserError(f"{latest} names {excerpt(version)}, not a published version; fix or remove {latest}")
    where = locations.join(publish_uri, version, MANIFEST)
    try:
        manifest = validate(loads(storage.read_bytes(where, storage.MANIFEST), where), PUBLISH_MANIFEST, where)
    except (UserError, storage.StorageError) as e:
        raise UserError(f"the champion cannot be read, so nothing is blessed against it: {e}; "
                            f"fix it or remove its {LATEST}") from None
    if manifest["version"] != version:
        raise UserError(f"{where} is of version {manifest['version']}, {latest} says {version}; fix or remove {latest}")
    return manifest


def check_publish_folder(publish_uri: str) -> None:
    """A local publish location is a folder (or none yet) and the names written in it stay inside it (no link out)."""
    if storage.is_remote(publish_uri):
        return
    if os.path.exists(publish_uri) and not os.path.isdir(publish_uri):
        raise UserError(f"publish location {publish_uri} is a file, not a folder")
    for name in (LATEST, f".{LATEST}.lock", CANDIDATES):
        locations.join(publish_uri, name, flag="publish location")


def read_champion(publish_uri: str) -> "dict | None":
    """The validated manifest of the model ``LATEST`` points to (a Model Registry's ``champion``), or None."""
    if model_registry.is_registry(publish_uri):
        return model_registry.read_champion(publish_uri)
    check_publish_folder(publish_uri)
    latest = storage.join(publish_uri, LATEST)
    if not (storage.exists(latest) if storage.is_remote(latest) else os.path.lexists(latest)):  # a broken link is said
        return None
    try:
        version = storage.read_bytes(latest, storage.RECORD).decode().strip()
    except UnicodeDecodeError:
        raise UserError(f"{latest} is not text; fix or remove it") from None
    return _manifest(publish_uri, version)


class Evaluated(NamedTuple):
    """What the evaluate step decided the model against: numbers on one test split, the champion it scored there."""
    test_accuracy: float
    test_set: str  # mlp_core.blessing.test_set_sha256 of the split
    champion_version: str  # "" when there was no champion
    tolerance: float


def _beats(evaluated: Evaluated, champion: "dict | None") -> "tuple[bool, str]":
    """May the model evaluate blessed take ``champion``'s place now (a newer champion: only on the same test split)?"""
    current = str(champion["version"]) if champion else ""
    if current == evaluated.champion_version:
        return True, ("no champion yet" if not current else
                      f"champion {current} is the one evaluate compared it with on the same test split")
    if champion is None:
        return True, f"no champion now (evaluate compared it with {evaluated.champion_version}, since removed)"
    if champion["metrics"].get("test_set_sha256") == evaluated.test_set:
        return bless(evaluated.test_accuracy, float("-inf"), evaluated.tolerance, champion["metrics"]["test_accuracy"])
    scored = f"champion {evaluated.champion_version}" if evaluated.champion_version else "no champion"
    return False, (f"the champion is {current}, but evaluate compared the model with {scored}; {current}'s numbers "
                   "are from another test split, so nothing is compared: evaluate the model again")


class TestMetrics(NamedTuple):
    """The numbers evaluate blessed a model with, as publish takes them."""
    test_accuracy: float
    test_loss: float
    champion_version: str  # the champion evaluate scored beside the model ("" for none)
    test_set: "str | None"  # mlp_core.blessing.test_set_sha256 of the split they are from; None when not recorded
    num_classes: "int | None"  # of the test split, for what the loss is; None when not recorded


# The part of the evaluate step's --metrics JSON (components.evaluate) publish reads.
EVALUATION = {
    "type": "object",
    "required": ["test_accuracy", "test_loss", "blessed", "reason", "champion_version", "test_set_sha256",
                 "class_names"],
    "properties": {
        **TEST_METRICS["properties"],
        "blessed": {"type": "boolean"},
        "reason": {"type": "string"},
        "champion_version": {"type": "string"},
        "test_set_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "class_names": {"type": "array", "minItems": 1},
    },
}


def read_evaluation(path: "str | Path") -> TestMetrics:
    """The numbers in evaluate's ``--metrics`` JSON file, which must say the model was blessed; ``UserError`` else."""
    try:
        text = storage.read_bytes(path, storage.METRICS)
    except OSError as e:
        raise UserError(str(e)) from None
    evaluation = validate(loads(text, str(path)), EVALUATION, str(path))
    check_champion_version(evaluation["champion_version"], f"{path}: champion_version")
    if not evaluation["blessed"]:
        raise UserError(f"{path}: evaluate did not bless this model ({evaluation['reason']}); nothing is published")
    return TestMetrics(float(evaluation["test_accuracy"]), float(evaluation["test_loss"]),
                       evaluation["champion_version"], evaluation["test_set_sha256"], len(evaluation["class_names"]))


def check_champion_version(version: str, what: str) -> str:
    """``version`` if it is a published version's name or a Model Registry version's number ("" for none)."""
    if version and not re.match(VERSION_PATTERN, version) and not re.fullmatch(r"[0-9]{1,20}", version):
        raise UserError(f"{what} {excerpt(version)} is not a published version's name (such as 20261126T184620Z-"
                          "3f9a1c2b7d4e, or a Model Registry version's number)", field="champion_version")
    return version


def metrics_from_artifact(metadata: dict, where: str) -> TestMetrics:
    """The numbers in the evaluate step's Metrics artifact (its metadata: ``components.evaluate`` logs them there)."""
    given = validate(dict(metadata), TEST_METRICS, where)
    classes = sum(name.startswith("f1_class_") for name in given)  # one F1 per class, as evaluate logs them
    return TestMetrics(float(given["test_accuracy"]), float(given["test_loss"]), "", None, classes or None)


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
    champion_version: str = "",
    validation: "dict[str, str | Path] | None" = None,
    test_set: "str | None" = None,
) -> Published:
    """Publish ``model`` as a version (UTC timestamp + short content hash) and move ``LATEST`` to it.

    ``validation``: the validate step's files kept with the version (a Model Registry version records their URIs);
    ``test_set``: the split the numbers are from, refused unless the model's own; ``champion_version``: the one
    evaluate scored beside it. ``LATEST`` (a Model Registry's ``champion`` alias) moves by compare-and-swap, only
    while ``_beats`` holds.
    """
    locations.check_publish_target(publish_uri, "--publish-uri")
    if model_uri:
        locations.check_location(model_uri, "--model-uri")
    # Parameter names (a command line says its flags: components._cli.error_line)
    test_accuracy = check_fraction("test_accuracy", test_accuracy)
    test_loss = check_loss("test_loss", test_loss)
    check_fraction("blessing_tolerance", tolerance)
    champion_version = check_champion_version(str(champion_version or ""), "champion_version")
    if model_registry.is_registry(publish_uri):
        _, config, dataset, history = load_model(model)  # refuses a broken model before anything is sent
        evaluated = Evaluated(test_accuracy, _test_set(dataset, test_set), champion_version, tolerance)
        version, promoted, reason = model_registry.publish(
            model, model_uri or str(model), publish_uri, test_accuracy, test_loss, image, run_id, tolerance,
            lambda accuracy, champion: _beats(evaluated._replace(test_accuracy=accuracy), champion),
            provenance=_registry_provenance(evaluated, config, history, dataset, validation))
        return Published(version, promoted, reason)
    check_apart({"--model": model}, {"--publish-uri": publish_uri})
    _, config, dataset, history = load_model(model)  # refuses a broken model before anything is written
    evaluated = Evaluated(test_accuracy, _test_set(dataset, test_set), champion_version, tolerance)
    beats, reason = _beats(evaluated, read_champion(publish_uri))
    if not beats:
        return Published("", False, f"not published: {reason}")
    digest = content_hash(model)
    version = f"{(now or datetime.now(timezone.utc)):%Y%m%dT%H%M%SZ}-{digest[:12]}"
    files = _upload_model(model, publish_uri, version)
    for name, path in (validation or {}).items():  # before the manifest: a version is complete when it is written
        locations.check_segment(name, "validation file", "file name")
        storage.write_bytes(locations.join(publish_uri, version, name), storage.read_bytes(path, storage.STATISTICS))
        files.append(name)
    manifest = {
        "version": version,
        "content_sha256": digest,
        "published_at": (now or datetime.now(timezone.utc)).isoformat(),
        # test_accuracy is on the test split test_set_sha256 names (the model's own, which evaluate scored)
        "metrics": {"test_accuracy": test_accuracy, "test_loss": test_loss, "epochs": len(history),
                    "test_set_sha256": evaluated.test_set},
        "compared_with": champion_version,  # the champion evaluate scored beside it ("" for none)
        "config": config.to_dict(),
        "dataset": {"name": dataset["name"], "version": dataset["version"], "image_shape": dataset["image_shape"],
                    "class_names": dataset["class_names"], "shards_sha256": dataset["shards"]},
        "image": image,
        # Set by the project image (Dockerfile): which locked dependencies trained and published this model.
        "image_lock_sha256": os.environ.get("JAX_MLP_LOCK_SHA256", ""),
        "pipeline_run_id": run_id,
        "files": files,
    }
    storage.write_bytes(locations.join(publish_uri, version, MANIFEST), dumps(manifest).encode())
    # The commit point: only now does a reader (or the next run's blessing) see this version.
    promote = _promote_remote if storage.is_remote(publish_uri) else _promote_local
    promoted, reason = promote(publish_uri, version, evaluated)
    return Published(version, promoted, reason)


def _registry_provenance(evaluated: Evaluated, config, history: list, dataset: dict,
                         validation: "dict[str, str | Path] | None") -> dict:
    """A Model Registry version's description: one fingerprint per split, the settings, the validate step's file URIs
    (object stores only: another machine reads them as the next run's baseline)."""
    return {
        "metrics": {"epochs": len(history), "test_set_sha256": evaluated.test_set},
        "compared_with": evaluated.champion_version,
        # One fingerprint per split, no list per shard or class: the description's size limit is not documented
        # (unverified), so the record stays small whatever the data (the class names are in the model's files).
        "dataset": {"name": dataset["name"], "version": dataset["version"], "image_shape": dataset["image_shape"],
                    "num_classes": dataset["num_classes"],
                    "splits_sha256": {split: test_set_sha256(shards) for split, shards in dataset["shards"].items()}},
        "config": config.to_dict(),
        "image_lock_sha256": os.environ.get("JAX_MLP_LOCK_SHA256", ""),
        "validation": {name: str(uri) for name, uri in (validation or {}).items() if storage.is_remote(str(uri))},
    }


def _test_set(dataset: dict, scored_on: "str | None") -> str:
    """The model's test split (its fingerprint); ``UserError`` when the numbers given are from another one."""
    ours = test_set_sha256(dataset["shards"]["test"])
    if scored_on is not None and scored_on != ours:
        raise UserError(f"the test metrics are from another test split ({scored_on[:12]}) than the model's "
                          f"({ours[:12]}): they are not this model's evaluation; evaluate it and publish with its metrics")
    return ours


def _upload_model(model: "str | Path", publish_uri: str, version: str) -> list[str]:
    """Copy the files ``model``'s marker lists (each proven inside it), then the marker; nothing else in the folder."""
    # load_model verified every file's sha256 just before: the names (each proven inside) are what is needed here.
    names = [*read_marker(model, "model", verify=False)["files"], COMPLETE]
    for name in names:
        storage.write_bytes(locations.join(publish_uri, version, name),
                            storage.read_bytes(locations.member(model, name), storage.PARAMS))
    return names


def _promote_local(publish_uri: str, version: str, evaluated: Evaluated) -> "tuple[bool, str]":
    """Move ``LATEST`` under a lock (filelock: fcntl on this machine), deciding against the champion read inside it."""
    from filelock import FileLock

    with FileLock(locations.join(publish_uri, f".{LATEST}.lock"), timeout=600):  # never a link planted out of it
        beats, reason = _beats(evaluated, read_champion(publish_uri))
        if beats:
            storage.write_bytes(storage.join(publish_uri, LATEST), (version + "\n").encode())
        return beats, reason


def _promote_remote(publish_uri: str, version: str, evaluated: Evaluated, attempts: int = 50) -> "tuple[bool, str]":
    """Move ``LATEST`` by compare-and-swap (Cloud Storage's object generation, S3's ETag); re-decide after every lost race."""
    latest = storage.join(publish_uri, LATEST)
    for attempt in range(attempts):
        current, generation = storage.read_versioned(latest)
        champion = _manifest(publish_uri, current.decode(errors="replace").strip()) if current is not None else None
        beats, reason = _beats(evaluated, champion)
        if not beats:
            return False, reason
        try:
            storage.write_if_unchanged(latest, (version + "\n").encode(), generation)
            return True, reason
        except storage.PreconditionFailed:
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))  # another publisher moved it: read again
    raise storage.StorageError(f"{latest} kept changing: {attempts} compare-and-swap attempts lost")


def champion_baseline(publish_uri: str) -> tuple["str | None", "str | None"]:
    """``(statistics URI, schema URI)`` kept with the champion at ``publish_uri`` (a registry records them); None if absent."""
    from mlp_core.data.validation import SCHEMA_FILE, STATISTICS_FILE

    if not publish_uri:
        return None, None
    if model_registry.is_registry(publish_uri):
        champion = model_registry.read_champion(publish_uri) or {}
        recorded = champion.get("validation") or {}
        found = []
        for name in (STATISTICS_FILE, SCHEMA_FILE):  # a record names object-store URIs only; nothing else is read
            uri = recorded.get(name)
            if not uri:
                found.append(None)
                continue
            if not isinstance(uri, str) or not storage.is_remote(uri):
                raise UserError(f"{publish_uri}@{model_registry.CHAMPION} (version {champion['version']}) records "
                                    f"a validation file that is not in an object store: {str(uri)[:200]!r}")
            locations.check_location(uri, f"the champion's {name}")
            found.append(uri if storage.exists(uri) else None)  # gone once its pipeline root was cleaned up
        return tuple(found)  # type: ignore[return-value]
    champion = read_champion(publish_uri)
    if champion is None:
        return None, None
    found = [storage.join(publish_uri, champion["version"], name) for name in (STATISTICS_FILE, SCHEMA_FILE)]
    return tuple(uri if storage.exists(uri) else None for uri in found)  # type: ignore[return-value]


if __name__ == "__main__":
    sys.exit(main())
