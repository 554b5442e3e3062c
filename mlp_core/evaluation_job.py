"""The evaluate step's work: a Model and a Dataset artifact in; test metrics, a report and a blessing out.

The model is *blessed* when its test accuracy is >= the threshold and >= the
current champion's (the model published at ``publish_uri``) minus the tolerance.
"""

from __future__ import annotations

from pathlib import Path

from mlp_core.blessing import bless, check_fraction
from mlp_core.evaluation import confusion_matrix
from mlp_core.evaluation import evaluate as evaluate_split
from mlp_core.outputs import check_apart, check_output_file

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
) -> dict:
    """Test metrics, per-class metrics, confusion matrix and blessing of ``model``.

    The blessing arguments are the evaluate step's parameters
    (``components.evaluate.evaluate`` declares them and their defaults; none is
    defaulted here). With ``report``/``report_markdown``, also writes the report there.
    """
    import numpy as np

    from mlp_core import report as report_lib
    from mlp_core.data.artifact import DatasetError, dataset_identity, load_metadata, read_split
    from mlp_core.metrics import macro_f1, per_class_metrics
    from mlp_core.model_io import load_model
    from mlp_core.publishing import read_champion

    threshold = check_fraction("--blessing-threshold", blessing_threshold)
    tolerance = check_fraction("--blessing-tolerance", blessing_tolerance)
    check_apart({"--model": model, "--dataset": dataset},
                {"--report": report, "--report-markdown": report_markdown})
    for path in (report, report_markdown):
        if path is not None:
            check_output_file(path)
    params, config, trained_on, history = load_model(model)
    metadata = load_metadata(dataset)
    identity = dataset_identity(metadata)
    for key in ("name", "image_shape", "num_classes"):
        if identity[key] != trained_on[key]:
            what = "dataset" if key == "name" else f"dataset's {key}"
            raise DatasetError(f"the {what} is {identity[key]}, the model was trained on {trained_on[key]}")
    champion = read_champion(publish_uri) if publish_uri else None
    images, labels = read_split(dataset, "test", metadata)
    test_loss, test_accuracy, predicted, confidence = evaluate_split(params, images, labels, keep_predictions=True)
    matrix = confusion_matrix(labels, predicted, config.num_classes)
    class_names = metadata["class_names"]
    per_class = per_class_metrics(matrix, class_names)
    champion_accuracy = champion["metrics"]["test_accuracy"] if champion else None
    blessed, reason = bless(test_accuracy, threshold, tolerance, champion_accuracy)
    result = {
        "num_examples": int(len(labels)),
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "macro_f1": macro_f1(per_class),
        "per_class": per_class,
        "class_names": class_names,
        "confusion_matrix": matrix.tolist(),
        "blessed": blessed,
        "reason": reason,
        "champion": {"version": champion["version"], "test_accuracy": champion_accuracy} if champion else None,
    }
    if report is not None or report_markdown is not None:
        wrong = np.flatnonzero(predicted != labels)
        worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISCLASSIFIED_SHOWN]
        plots = {
            "Training curves": report_lib.training_curves(history),
            "Confusion matrix": report_lib.confusion_heatmap(result["confusion_matrix"], class_names),
            "Most confidently misclassified test images": report_lib.misclassified_grid(
                images[worst], [class_names[i] for i in labels[worst]], [class_names[i] for i in predicted[worst]],
                confidence[worst].tolist(),
            ),
        }
        page, markdown = report_lib.render(result, plots, f"Evaluation of {trained_on['name']} model")
        if report is not None:
            _write_text(report, page)
        if report_markdown is not None:
            _write_text(report_markdown, markdown)
    return result


def _write_text(path, text: str) -> None:
    from mlp_core.storage import write_bytes

    write_bytes(str(path), text.encode())
