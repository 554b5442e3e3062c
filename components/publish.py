"""Publish: copy a blessed model to ``<publish_uri>/<version>/`` and move ``LATEST`` to it.

    python -m components.publish --model DIR --publish-uri gs://bucket/mnist-mlp --test-metrics test_metrics.json

The numbers come from what evaluate wrote (its ``--metrics`` file; in the pipeline its Metrics
artifact), never typed again: a typo would move the champion. ``--metrics-by-hand`` with
``--test-accuracy`` and ``--test-loss`` is the explicit exception.
The layout and the compare-and-swap on ``LATEST``: ``jobs.publishing``.
"""

import argparse
import sys

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model

from platforms.options import StepPolicy
from components._cli import exit_on_error, loss_note
from mlp_core.errors import UserError
from components._step import add_parameter_flags, descriptions
from jobs.publishing import Published, TestMetrics, publish_model

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
    from jobs.publishing import metrics_from_artifact

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
    from platforms.vertex.model_registry import CHAMPION, is_registry

    if not published.version:
        return published.reason
    if is_registry(publish_uri):
        return (f"published version {published.version} to {publish_uri}; alias {CHAMPION} "
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
    from artifacts.locations import check_flags, check_publish_target, check_segment

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
    from jobs.publishing import read_evaluation

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


if __name__ == "__main__":
    sys.exit(main())
