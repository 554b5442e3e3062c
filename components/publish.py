"""Publish: copy a blessed model to ``<publish_uri>/<version>/`` and move ``LATEST`` to it.

    python -m components.publish --model DIR --publish-uri gs://bucket/mnist-mlp --test-accuracy 0.9691 --test-loss 0.0103 \\
        [--champion-version VERSION]

The layout and the compare-and-swap on ``LATEST``: ``mlp_core.publishing``.
"""

import argparse
import sys

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from clusters.options import StepPolicy
from components._cli import exit_on_error
from components._step import add_parameter_flags, defaults, descriptions
from mlp_core.blessing import DEFAULT_TOLERANCE
from mlp_core.publishing import Published, publish_model

# On a cluster: never cached, since it moves LATEST, state that is not one of its inputs.
CLUSTER = StepPolicy("500m", "1", "1Gi", "2Gi", cacheable=False)


@defaults(blessing_tolerance=DEFAULT_TOLERANCE, image="", run_id="", champion_version="")
def publish(
    model: Input[Model],
    statistics: Input[Artifact],
    data_schema: Input[Artifact],
    publish_uri: str,
    test_accuracy: float,
    test_loss: float,
    blessing_tolerance: float,
    image: str,
    run_id: str,
    champion_version: str,
) -> str:
    """Publish the blessed model and move LATEST to it if the champion is still the one evaluate compared it with (components.publish).

    Args:
        model: Model artifact folder (from components.train)
        statistics: the data's statistics (from components.validate), kept with the version: the next runs' drift
            baseline
        data_schema: the schema the data was validated against (from components.validate), kept with the version
        publish_uri: publish location, a folder or gs://bucket/prefix, or a Vertex AI Model Registry model
            (projects/P/locations/L/models/M)
        test_accuracy: the model's test accuracy (from components.evaluate)
        test_loss: the model's test loss (from components.evaluate)
        blessing_tolerance: for a champion published since evaluate ran, scored on the same test split: LATEST moves
            if the test accuracy is at least its accuracy minus this
        image: image tag the model was trained with, for the manifest
        run_id: pipeline run id, for the manifest
        champion_version: the champion evaluate scored beside the model on its test split (from components.evaluate;
            empty for none); LATEST moves only while it names this version (or one scored on the same test split)
    """
    from components.publish import publish_model, report

    # model.uri: the same model in the object store (gs:// on Vertex AI), what a Model Registry version points at
    from mlp_core.data.validation import SCHEMA_FILE, STATISTICS_FILE

    published = publish_model(model.path, publish_uri, test_accuracy, test_loss, image, run_id,
                              tolerance=blessing_tolerance, model_uri=model.uri, champion_version=champion_version,
                              validation={STATISTICS_FILE: statistics.path, SCHEMA_FILE: data_schema.path})
    print(report(published, publish_uri))
    return published.version


def report(published: "Published", publish_uri: str) -> str:
    """One line: what was published, and whether LATEST moved."""
    from mlp_core.model_registry import CHAMPION, is_registry

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
        description="Publish a Model artifact to <publish-uri>/<version>/ (local folder or gs://) and move LATEST to it.",
    )
    p.add_argument("--model", required=True, help=descriptions(publish)["model"])
    p.add_argument("--model-uri", default=None, help="where the same model lies in Cloud Storage (gs://), for a Model "
                   "Registry publish target, whose versions point at it")
    p.add_argument("--statistics", default=None, help=descriptions(publish)["statistics"] + " (validate's --statistics)")
    p.add_argument("--schema", default=None, help=descriptions(publish)["data_schema"] + " (validate's --output-schema)")
    add_parameter_flags(p, publish)
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    from mlp_core.locations import check_flags, check_segment

    check_flags({"--model": args.model, "--model-uri": args.model_uri, "--statistics": args.statistics,
                 "--schema": args.schema}, local=("--model", "--statistics", "--schema"))
    from mlp_core.data.validation import SCHEMA_FILE, STATISTICS_FILE

    validation = {name: path for name, path in ((STATISTICS_FILE, args.statistics), (SCHEMA_FILE, args.schema)) if path}
    if args.run_id:
        check_segment(args.run_id, "--run-id", "run id")
    published = publish_model(args.model, args.publish_uri, args.test_accuracy, args.test_loss, args.image, args.run_id,
                              tolerance=args.blessing_tolerance, model_uri=args.model_uri,
                              champion_version=args.champion_version, validation=validation)
    print(report(published, args.publish_uri))
    return 0


if __name__ == "__main__":
    sys.exit(main())
