"""The evaluate step's work: a Model and a Dataset artifact in; test metrics, a report and a blessing out.

The current champion (the model published at ``publish_uri``: ``LATEST``'s version folder, or the
Model Registry version holding the ``champion`` alias) is loaded and scored on this run's test split
beside the new model. The model is *blessed* when its test accuracy is >= the threshold and >= the
champion's accuracy on the same split minus the tolerance (``mlp_core.blessing.bless_against_champion``).
A champion trained on other classes or another input shape cannot be scored on today's data: it is
reported as incomparable and replaced only with ``force``. Numbers stored with the champion (scored on
whatever test set its own run had) are never compared.
"""

from __future__ import annotations

from pathlib import Path

from mlp_core.blessing import bless_against_champion, check_fraction, test_set_sha256
from mlp_core.errors import UserError
from artifacts.outputs import check_apart, check_output_file

# How many of the most confidently misclassified test images the report shows.
MISCLASSIFIED_SHOWN = 16


def evaluate_on_dataset(
    model: "str | Path",
    dataset: "str | Path",
    *,
    report: "str | Path | None",
    report_markdown: "str | Path | None",
    blessing_threshold: float,
    blessing_tolerance: float,
    publish_uri: str,
    force: bool,
    run_id: str = "",
    model_uri: str = "",
    tuned: str = "",
) -> dict:
    """Test metrics, per-class metrics, confusion matrix and blessing of ``model``.

    The blessing arguments are the evaluate step's parameters
    (``components.evaluate.evaluate`` declares them and their defaults; none is
    defaulted here). With ``report``/``report_markdown``, also writes the report there.
    ``run_id`` (the pipeline run that trained the model) and ``model_uri`` (where the Model
    artifact lives; default ``model``) only name the run in the result and the report; ``tuned`` (the tune step's
    best_hyperparameters JSON) says the settings were chosen by tuning.
    """
    threshold = check_fraction("--blessing-threshold", blessing_threshold)
    tolerance = check_fraction("--blessing-tolerance", blessing_tolerance)
    check_apart({"--model": model, "--dataset": dataset},
                {"--report": report, "--report-markdown": report_markdown})
    for path in (report, report_markdown):
        if path is not None:
            check_output_file(path)
    # After the checks: JAX and TensorFlow take 4-10 s to load, a refusal before them comes at once.
    from datetime import datetime, timezone

    import numpy as np

    from mlp_core import report as report_lib
    from mlp_core.data.artifact import dataset_identity, load_metadata, read_split
    from mlp_core.evaluation import class_comparison
    from artifacts.outputs import read_marker
    from mlp_core.model_io import load_model
    from artifacts.locations import is_resource_name
    from jobs.publishing import read_champion

    params, config, trained_on, history = load_model(model)
    trained_at = read_marker(model, "model", verify=False).get("completed_at")  # load_model has checked it
    metadata = load_metadata(dataset)
    identity = dataset_identity(metadata)
    for key in ("name", "image_shape", "num_classes"):
        if identity[key] != trained_on[key]:
            what = "dataset" if key == "name" else f"dataset's {key}"
            raise UserError(f"the {what} is {identity[key]}, the model was trained on {trained_on[key]}")
    published = read_champion(publish_uri) if publish_uri else None
    images, labels = read_split(dataset, "test", metadata)
    class_names = metadata["class_names"]
    ours = _score(params, images, labels, class_names)
    champion = _rescore_champion(publish_uri, published, metadata, images, labels) if published else None
    blessed, reason = bless_against_champion(ours["test_accuracy"], threshold, tolerance, champion, force)
    comparison = class_comparison(ours["per_class"], champion["per_class"]) if champion and champion["comparable"] else []
    result = {
        "num_examples": int(len(labels)),
        "test_accuracy": ours["test_accuracy"],
        "test_loss": ours["test_loss"],
        "macro_f1": ours["macro_f1"],
        "per_class": ours["per_class"],
        "class_names": class_names,
        "image_shape": metadata["image_shape"],
        "confusion_matrix": ours["confusion_matrix"],
        "test_set_sha256": test_set_sha256(identity["shards"]["test"]),
        "blessed": blessed,
        "reason": reason,
        "force": bool(force),
        # For publish: LATEST (or the alias) moves only if it still names the champion scored here.
        "champion_version": champion["version"] if champion else "",
        "champion_test_accuracy": champion["test_accuracy"] if champion else None,
        "champion": champion,
        "class_comparison": comparison,
        "worse_classes": [c["class"] for c in comparison if c["worse"]],
        # What the numbers are of: the run, the data and the settings the model was trained with.
        "run": {"run_id": run_id, "model": str(model_uri or model), "trained_at": trained_at, "tuned": tuned,
                "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "dataset": report_lib.dataset_facts(metadata, trained_on),
        "hyperparameters": config.to_dict(),
    }
    lost_to_champion = not blessed and champion is not None and ours["test_accuracy"] >= threshold
    if publish_uri and lost_to_champion and not is_resource_name(publish_uri):
        from jobs.novelty import record_candidate

        # So that the next scheduled run on the same data and settings does not train this loser again.
        record_candidate(publish_uri, trained_on["shards"], config.to_dict(), result)
    if report is not None or report_markdown is not None:
        wrong = np.flatnonzero(ours["predicted"] != labels)
        worst = wrong[np.argsort(-ours["confidence"][wrong], kind="stable")][:MISCLASSIFIED_SHOWN]
        predicted = ours["predicted"]
        plots = {
            "Training curves": report_lib.training_curves(history, len(class_names)),
            "Confusion matrix": report_lib.confusion_heatmap(result["confusion_matrix"], class_names),
            "Most confidently misclassified test images": report_lib.misclassified_grid(
                images[worst], [class_names[i] for i in labels[worst]], [class_names[i] for i in predicted[worst]],
                ours["confidence"][worst].tolist(),
            ),
        }
        page, markdown = report_lib.render(result, plots, f"Evaluation of {trained_on['name']} model")
        if report is not None:
            _write_text(report, page)
        if report_markdown is not None:
            _write_text(report_markdown, markdown)
    return result


def _score(params, images, labels, class_names: list[str]) -> dict:
    """Loss, accuracy, confusion matrix and per-class metrics of ``params`` on one split (with its predictions)."""
    from mlp_core.evaluation import confusion_matrix, evaluate as evaluate_split
    from mlp_core.metrics import macro_f1, per_class_metrics

    test_loss, test_accuracy, predicted, confidence = evaluate_split(params, images, labels, keep_predictions=True)
    matrix = confusion_matrix(labels, predicted, len(class_names))
    per_class = per_class_metrics(matrix, class_names)
    return {"test_accuracy": test_accuracy, "test_loss": test_loss, "macro_f1": macro_f1(per_class),
            "per_class": per_class, "confusion_matrix": matrix.tolist(), "predicted": predicted, "confidence": confidence}


def _rescore_champion(publish_uri: str, published: dict, metadata: dict, images, labels) -> dict:
    """The champion scored on this run's test split, or marked incomparable (other classes or input shape)."""
    params, trained_on = _load_champion(publish_uri, published)
    champion = {"version": str(published["version"]), "comparable": True, "incomparable": "",
                "trained_on": {k: trained_on[k] for k in ("name", "version", "image_shape", "class_names")}}
    why = []
    if list(trained_on["class_names"]) != list(metadata["class_names"]):
        why.append(f"its classes are {_names(trained_on['class_names'])}, this run's are {_names(metadata['class_names'])}")
    if list(trained_on["image_shape"]) != list(metadata["image_shape"]):
        why.append(f"its input shape is {trained_on['image_shape']}, this run's images are {metadata['image_shape']}")
    if why:
        return {**champion, "comparable": False, "incomparable": "; ".join(why), "test_accuracy": None,
                "test_loss": None, "macro_f1": None, "per_class": None, "confusion_matrix": None}
    scored = _score(params, images, labels, metadata["class_names"])
    return {**champion, **{k: v for k, v in scored.items() if k not in ("predicted", "confidence")}}


def _names(names: list[str], shown: int = 12) -> str:
    listed = ", ".join(names[:shown]) + (f", ... ({len(names)})" if len(names) > shown else "")
    return f"[{listed}]"


def _load_champion(publish_uri: str, published: dict) -> tuple:
    """``(params, dataset identity)`` of the champion's model: its version folder, or the registry version's model_uri.

    A local publish location is read in place; a remote one (and a Model Registry version's ``gs://``
    model) is downloaded, checked against its marker, into a temporary folder removed afterwards.
    """
    import tempfile

    from platforms.vertex import model_registry
    from artifacts import remote as remote_artifacts, storage
    from mlp_core.model_io import load_model

    version = published["version"]
    if model_registry.is_registry(publish_uri):
        where = published.get("model_uri")
        if not isinstance(where, str) or not where.startswith("gs://"):
            raise UserError(f"{publish_uri} version {version} (the champion) names no gs:// model_uri, so it cannot "
                                "be scored on this run's test split: move the alias or remove it")
    else:
        where = storage.join(publish_uri, version)
    try:
        if not storage.is_remote(where):
            params, _, trained_on, _ = load_model(where)
            return params, trained_on
        with tempfile.TemporaryDirectory(prefix="champion-") as folder:
            params, _, trained_on, _ = load_model(remote_artifacts.download(where, "model", Path(folder) / "model"))
            return params, trained_on
    except (UserError, storage.StorageError) as e:
        raise UserError(f"the champion (version {version}) cannot be loaded, so nothing is blessed against it: "
                            f"{str(e).splitlines()[0]}") from None


def _write_text(path, text: str) -> None:
    from artifacts.storage import write_bytes

    write_bytes(str(path), text.encode())
