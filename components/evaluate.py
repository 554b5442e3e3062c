"""Evaluate: a Model and a Dataset artifact -> test metrics and a confusion matrix.

    python -m components.evaluate --model DIR --dataset DIR --metrics FILE
"""

import argparse
import sys
from pathlib import Path

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components._cli import exit_on_error
from components._io import check_output_file, write_json


def evaluate_model(model: "str | Path", dataset: "str | Path", split: str = "test") -> dict:
    """Test loss, accuracy and confusion matrix of ``model`` on ``dataset``'s ``split``."""
    from mlp_core.data.artifact import DatasetError, dataset_identity, load_metadata, read_split
    from mlp_core.model_io import load_model
    from mlp_core.train import confusion_matrix, evaluate as evaluate_params, flatten_images

    params, config, trained_on, _ = load_model(model)
    metadata = load_metadata(dataset)
    identity = dataset_identity(metadata)
    for key in ("name", "image_shape", "num_classes"):
        if identity[key] != trained_on[key]:
            what = "dataset" if key == "name" else f"dataset's {key}"
            raise DatasetError(f"the {what} is {identity[key]}, the model was trained on {trained_on[key]}")
    images, labels = read_split(dataset, split, metadata)
    split_loss, split_accuracy, predicted = evaluate_params(params, flatten_images(images), labels)
    matrix = confusion_matrix(labels, predicted, config.num_classes)
    return {
        "split": split,
        "num_examples": int(len(labels)),
        f"{split}_accuracy": split_accuracy,
        f"{split}_loss": split_loss,
        "class_names": metadata["class_names"],
        "confusion_matrix": matrix.tolist(),
    }


def evaluate(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
):
    """Evaluate the trained MLP on the test split (components.evaluate)."""
    from components.evaluate import evaluate_model

    result = evaluate_model(model.path, dataset.path)
    metrics.log_metric("test_accuracy", result["test_accuracy"])
    metrics.log_metric("test_loss", result["test_loss"])
    classification_metrics.log_confusion_matrix(result["class_names"], result["confusion_matrix"])
    print(f"test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f}")


def component(base_image: str):
    """``evaluate`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(evaluate, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.evaluate",
        description="Evaluate a Model artifact on a Dataset artifact's test split: accuracy, loss, confusion matrix.",
    )
    p.add_argument("--model", required=True, help="Model artifact folder (from components.train)")
    p.add_argument("--dataset", required=True, help="Dataset artifact folder (from components.ingest)")
    p.add_argument("--metrics", default=None, help="JSON file to write the metrics and confusion matrix to")
    p.add_argument("--split", default="test", help="split to evaluate (default: %(default)s)")
    return p


def _format_matrix(class_names: list[str], matrix: list[list[int]]) -> str:
    width = max(5, *(len(str(v)) for row in matrix for v in row)) + 1
    head = "true\\pred" + "".join(f"{n:>{width}}" for n in class_names)
    rows = [f"{name:>9}" + "".join(f"{v:>{width}}" for v in row) for name, row in zip(class_names, matrix)]
    return "\n".join([head, *rows])


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    if args.metrics:
        check_output_file(args.metrics)
    result = evaluate_model(args.model, args.dataset, args.split)
    if args.metrics:
        write_json(args.metrics, result)
    print(_format_matrix(result["class_names"], result["confusion_matrix"]))
    print(f"{args.split} accuracy {result[f'{args.split}_accuracy']:.4f}, {args.split} loss {result[f'{args.split}_loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
