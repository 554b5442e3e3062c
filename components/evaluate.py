"""Evaluate: a Model and a Dataset artifact -> test metrics, a report and a blessing.

    python -m components.evaluate --model DIR --dataset DIR --metrics FILE \\
        [--report report.html] [--report-markdown report.md] [--blessing-threshold 0.95] [--publish-uri URI] [--force]

The current champion (the model published at ``--publish-uri``) is scored on the same test split.
The model is *blessed* when its test accuracy is >= ``--blessing-threshold`` and >= the champion's
accuracy on that split minus ``--blessing-tolerance``; a champion of other classes or another input
shape is incomparable and replaced only with ``--force`` (``components.evaluate``).
"""

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from platforms.options import StepPolicy
from components._cli import check_inputs, exit_on_error, loss_note
from components._step import add_parameter_flags, descriptions
from mlp_core.blessing import (DEFAULT_THRESHOLD, DEFAULT_TOLERANCE, bless_against_champion, check_fraction,
                               test_set_sha256)
from mlp_core.errors import UserError
from artifacts.outputs import check_apart, check_output_file, write_json

# On a cluster: peak RSS 0.83 GB on full MNIST; never cached: its blessing reads the champion at publish_uri,
# which is not one of its inputs.
CLUSTER = StepPolicy("1", "2", "2Gi", "4Gi", cacheable=False)

def evaluate(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[HTML],
    report_markdown: Output[Markdown],
    blessing_threshold: float = 0.95,
    blessing_tolerance: float = 0.002,
    publish_uri: str = "",
    force: bool = False,
) -> NamedTuple("EvaluateOutputs", [("blessed", bool), ("reason", str), ("test_accuracy", float), ("test_loss", float),
                                    ("champion_version", str)]):
    """Evaluate the trained MLP on the test split and decide its blessing (components.evaluate).

    Args:
        model: Model artifact folder (from components.train)
        dataset: Dataset artifact folder (from components.ingest)
        metrics: test metrics
        classification_metrics: the confusion matrix
        report: the evaluation report (HTML)
        report_markdown: the same report as Markdown
        blessing_threshold: minimum test accuracy to bless (and publish) the model
        blessing_tolerance: how far below the champion's test accuracy is still blessed
        publish_uri: where blessed models are published and the champion is read (folder or gs://); empty, no
            champion and nothing published
        force: bless a model (above the threshold) that replaces a champion of other classes or another input
            shape, which cannot be scored on this run's test split
    """
    from collections import namedtuple

    from components.evaluate import champion_line, evaluate_on_dataset

    # The run id: the train step puts it on its Model's metadata, which kfp hands on with the artifact.
    result = evaluate_on_dataset(model.path, dataset.path, report=report.path, report_markdown=report_markdown.path,
                                 blessing_threshold=blessing_threshold, blessing_tolerance=blessing_tolerance,
                                 publish_uri=publish_uri, force=force, run_id=str(model.metadata.get("run_id", "")),
                                 model_uri=model.uri, tuned=str(model.metadata.get("tuned", "")))
    metrics.log_metric("test_accuracy", result["test_accuracy"])
    metrics.log_metric("test_loss", result["test_loss"])
    metrics.log_metric("macro_f1", result["macro_f1"])
    for c in result["per_class"]:
        metrics.log_metric(f"f1_class_{c['class']}", c["f1"])
    if result["champion_test_accuracy"] is not None:  # the champion on this run's test split
        metrics.log_metric("champion_test_accuracy", result["champion_test_accuracy"])
    classification_metrics.log_confusion_matrix(result["class_names"], result["confusion_matrix"])
    from components._cli import loss_note

    print(f"test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f} "
          f"({loss_note(len(result['class_names']))})")
    print(champion_line(result))
    print(f"{'blessed' if result['blessed'] else 'not blessed'}: {result['reason']}")
    outputs = namedtuple("EvaluateOutputs", ["blessed", "reason", "test_accuracy", "test_loss", "champion_version"])
    return outputs(result["blessed"], result["reason"], result["test_accuracy"], result["test_loss"],
                   result["champion_version"])


def champion_line(result: dict) -> str:
    """One line: the champion beside the new model on this run's test split (or why it could not be scored)."""
    champion = result["champion"]
    if champion is None:
        return "champion: none yet"
    if not champion["comparable"]:
        return f"champion {champion['version']}: incomparable ({champion['incomparable']})"
    worse = result["worse_classes"]
    return (f"champion {champion['version']} on this test split: accuracy {champion['test_accuracy']:.4f}, "
            f"loss {champion['test_loss']:.4f}; the new model is worse on "
            + (f"{len(worse)} class(es): {', '.join(worse)}" if worse else "no class"))


def component(base_image: str):
    """``evaluate`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(evaluate, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.evaluate",
        description="Evaluate a Model artifact on a Dataset artifact's test split: accuracy, loss, per-class "
        "metrics, confusion matrix, an HTML/Markdown report, and the blessing decision.",
    )
    texts = descriptions(evaluate)
    p.add_argument("--model", required=True, help=texts["model"])
    p.add_argument("--dataset", required=True, help=texts["dataset"])
    p.add_argument("--metrics", default=None, help="JSON file to write the metrics and confusion matrix to")
    p.add_argument("--report", default=None, help="HTML report to write")
    p.add_argument("--report-markdown", default=None, help="the same report as Markdown")
    add_parameter_flags(p, evaluate)
    return p


def _format_matrix(class_names: list[str], matrix: list[list[int]]) -> str:
    width = max(5, *(len(str(v)) for row in matrix for v in row)) + 1
    head = "true\\pred" + "".join(f"{n:>{width}}" for n in class_names)
    rows = [f"{name:>9}" + "".join(f"{v:>{width}}" for v in row) for name, row in zip(class_names, matrix)]
    return "\n".join([head, *rows])


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    from artifacts.locations import check_flags, check_publish_target
    from artifacts.outputs import check_apart

    check_flags({"--model": args.model, "--dataset": args.dataset, "--metrics": args.metrics, "--report": args.report,
                 "--report-markdown": args.report_markdown},
                local=("--model", "--dataset", "--metrics", "--report", "--report-markdown"))
    if args.publish_uri:
        check_publish_target(args.publish_uri, "--publish-uri")

    inputs = {"--model": args.model, "--dataset": args.dataset}
    check_inputs(inputs)
    check_apart(inputs, {"--metrics": args.metrics, "--report": args.report, "--report-markdown": args.report_markdown})
    if args.metrics:
        check_output_file(args.metrics)
    result = evaluate_on_dataset(args.model, args.dataset, report=args.report, report_markdown=args.report_markdown,
                                 blessing_threshold=args.blessing_threshold, blessing_tolerance=args.blessing_tolerance,
                                 publish_uri=args.publish_uri, force=args.force)
    if args.metrics:
        write_json(args.metrics, result)
    print(_format_matrix(result["class_names"], result["confusion_matrix"]))
    print(f"test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f} "
          f"({loss_note(len(result['class_names']))}), macro F1 {result['macro_f1']:.4f}")
    print(champion_line(result))
    print(f"{'blessed' if result['blessed'] else 'not blessed'}: {result['reason']}")
    return 0



# How many of the most confidently misclassified test images the report shows.
MISCLASSIFIED_SHOWN = 16


def evaluate_on_dataset(
    model: "str | Path",
    dataset: "str | Path",
    *,
    report: "str | Path | None" = None,
    report_markdown: "str | Path | None" = None,
    blessing_threshold: float = DEFAULT_THRESHOLD,
    blessing_tolerance: float = DEFAULT_TOLERANCE,
    publish_uri: str = "",
    force: bool = False,
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
    from components.publish import read_champion

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
        from components.new_data import record_candidate

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

if __name__ == "__main__":
    sys.exit(main())
