"""Evaluate: a Model and a Dataset artifact -> test metrics, a report and a blessing.

    python -m components.evaluate --model DIR --dataset DIR --metrics FILE \\
        [--report report.html] [--report-markdown report.md] [--blessing-threshold 0.95] [--publish-uri URI] [--force]

The current champion (the model published at ``--publish-uri``) is scored on the same test split.
The model is *blessed* when its test accuracy is >= ``--blessing-threshold`` and >= the champion's
accuracy on that split minus ``--blessing-tolerance``; a champion of other classes or another input
shape is incomparable and replaced only with ``--force`` (``jobs.evaluation``).
"""

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from platforms.options import StepPolicy
from components._cli import check_inputs, exit_on_error, loss_note
from components._step import add_parameter_flags, bind, descriptions, values
from artifacts.outputs import check_output_file, write_json

# On a cluster: peak RSS 0.83 GB on full MNIST; never cached: its blessing reads the champion at publish_uri,
# which is not one of its inputs.
CLUSTER = StepPolicy("1", "2", "2Gi", "4Gi", cacheable=False)

def evaluate_model(model: "str | Path", dataset: "str | Path", report: "str | Path | None" = None,
                   report_markdown: "str | Path | None" = None, run_id: str = "", model_uri: str = "",
                   tuned: str = "", **params) -> dict:
    """The evaluate step on artifact paths; ``params`` are its parameters (``evaluate`` declares their defaults).

    ``run_id`` and ``model_uri`` name the run and the Model in the result and the report.
    """
    from jobs.evaluation import evaluate_on_dataset

    return evaluate_on_dataset(model, dataset, report=report, report_markdown=report_markdown, run_id=run_id,
                               model_uri=model_uri, tuned=tuned, **bind(evaluate, params))


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

    from components.evaluate import champion_line, evaluate_model

    # The run id: the train step puts it on its Model's metadata, which kfp hands on with the artifact.
    result = evaluate_model(model.path, dataset.path, report.path, report_markdown.path,
                            run_id=str(model.metadata.get("run_id", "")), model_uri=model.uri,
                            tuned=str(model.metadata.get("tuned", "")),
                            blessing_threshold=blessing_threshold, blessing_tolerance=blessing_tolerance,
                            publish_uri=publish_uri, force=force)
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
    result = evaluate_model(args.model, args.dataset, args.report, args.report_markdown, **values(args, evaluate))
    if args.metrics:
        write_json(args.metrics, result)
    print(_format_matrix(result["class_names"], result["confusion_matrix"]))
    print(f"test accuracy {result['test_accuracy']:.4f}, test loss {result['test_loss']:.4f} "
          f"({loss_note(len(result['class_names']))}), macro F1 {result['macro_f1']:.4f}")
    print(champion_line(result))
    print(f"{'blessed' if result['blessed'] else 'not blessed'}: {result['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
