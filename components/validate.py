"""Validate: a Dataset artifact -> its statistics, schema, anomalies and a report; any anomaly stops the run.

    python -m components.validate --dataset DIR --statistics statistics.pb --anomalies anomalies.pbtxt \\
        --report report.html [--report-markdown report.md] [--output-schema schema.pbtxt] \\
        [--schema FILE] [--baseline-statistics FILE] [--publish-uri URI] [--max-label-linf 0.05] [--max-pixel-js 0.01]

Statistics (``DatasetFeatureStatisticsList``, binary: ``tfdv.load_stats_binary``), the schema
(``Schema``, text: ``tfdv.load_schema_text``) and the anomalies (``Anomalies``, text:
``tfdv.load_anomalies_text``) are tensorflow_metadata protos (``mlp_core.data.statistics``,
``mlp_core.data.validation``). The schema is ``--schema``, else the champion's (at
``--publish-uri``), else inferred from this data; drift is measured against
``--baseline-statistics``, else the champion's, else not at all (the first run). Every output is
written, anomalies or not; then each anomaly is one line on stderr and the exit status is 2 (the
kfp component raises, so the run stops before training).
"""

import argparse
import sys
from pathlib import Path

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from platforms.options import StepPolicy
from components._cli import check_inputs, exit_on_error
from components._step import add_parameter_flags, bind, descriptions, values

# On a cluster: numpy over one shard at a time (0.7 s for all of MNIST here); never cached, since the
# champion's baseline at publish_uri is not one of its inputs.
CLUSTER = StepPolicy("1", "2", "1Gi", "2Gi", cacheable=False)


class DataAnomalyError(RuntimeError):
    """The data has anomalies: the run stops before training (the component's failure)."""


def validate_dataset(dataset: "str | Path", statistics: "str | Path", anomalies: "str | Path",
                     output_schema: "str | Path | None" = None, report: "str | Path | None" = None,
                     report_markdown: "str | Path | None" = None, **params) -> dict:
    """The validate step on artifact paths; ``params`` are its parameters (``validate`` declares their defaults).

    Inputs are read (and a bad one refused) before anything is written; then every output is written.
    Returns ``{"anomalies": [one line each], "drift": {...}, "schema_source": ..., "baseline_source": ...}``.
    """
    from google.protobuf import text_format

    from mlp_core.blessing import check_fraction
    from mlp_core.errors import UserError
    from mlp_core.data import validation
    from mlp_core.data.statistics import compute_statistics, read_statistics, write_statistics
    from components.publish import champion_baseline
    from artifacts.storage import write_bytes

    given = bind(validate, params)
    max_label_linf = check_fraction("--max-label-linf", given["max_label_linf"])
    max_pixel_js = check_fraction("--max-pixel-js", given["max_pixel_js"])
    if given["max_leaked_images"] < 0:
        raise UserError(f"--max-leaked-images must be >= 0, got {given['max_leaked_images']}")
    champion_statistics, champion_schema = champion_baseline(given["publish_uri"])
    schema_uri = given["schema"] or champion_schema
    baseline_uri = given["baseline_statistics"] or champion_statistics
    schema = validation.read_schema(schema_uri) if schema_uri else None
    baseline = read_statistics(baseline_uri) if baseline_uri else None

    stats = compute_statistics(dataset)
    schema_source = f"from {schema_uri}" if schema_uri else "inferred from these statistics (the first run)"
    schema = validation.with_thresholds(schema or validation.infer_schema(stats), max_label_linf, max_pixel_js)
    found = validation.validate_statistics(stats, schema, baseline, max_label_linf, max_pixel_js,
                                           given["max_leaked_images"])
    lines = validation.anomaly_lines(found)
    page, markdown = validation.render_report(stats, found, baseline, schema_source,
                                              f"Data validation of {Path(dataset).name}")
    write_statistics(stats, statistics)
    write_bytes(str(anomalies), text_format.MessageToString(found).encode())
    if output_schema is not None:
        write_bytes(str(output_schema), validation.schema_text(schema).encode())
    if report is not None:
        write_bytes(str(report), page.encode())
    if report_markdown is not None:
        write_bytes(str(report_markdown), markdown.encode())
    return {"anomalies": lines, "drift": validation.drift_measurements(found), "schema_source": schema_source,
            "baseline_source": str(baseline_uri) if baseline_uri else None}


def validate(
    dataset: Input[Dataset],
    statistics: Output[Artifact],
    output_schema: Output[Artifact],
    anomalies: Output[Artifact],
    report: Output[HTML],
    report_markdown: Output[Markdown],
    schema: str = "",
    baseline_statistics: str = "",
    publish_uri: str = "",
    max_label_linf: float = 0.05,
    max_pixel_js: float = 0.01,
    max_leaked_images: int = 0,
):
    """Validate the Dataset before training: statistics, schema, anomalies and drift (components.validate).

    Args:
        dataset: Dataset artifact folder (from components.ingest)
        statistics: the statistics per split (tensorflow_metadata DatasetFeatureStatisticsList, binary)
        output_schema: the schema the data was checked against (tensorflow_metadata Schema, text)
        anomalies: the anomalies found (tensorflow_metadata Anomalies, text)
        report: the validation report (HTML)
        report_markdown: the same report as Markdown
        schema: a data schema file (text-format tensorflow_metadata Schema; path, gs:// or s3://); empty, the
            champion's schema at publish_uri, else one inferred from this data
        baseline_statistics: statistics to measure drift against (binary DatasetFeatureStatisticsList; path,
            gs:// or s3://); empty, the champion's at publish_uri, else no drift check
        publish_uri: where blessed models are published and the champion is read (folder or gs://); empty, no
            champion and nothing published
        max_label_linf: largest L-infinity distance allowed between the train split's label distribution and
            the baseline's (TFDV's categorical drift measure)
        max_pixel_js: largest Jensen-Shannon divergence (bits) allowed between the train split's
            pixel-intensity histogram and the baseline's (TFDV's numeric drift measure)
        max_leaked_images: how many images of one split may also be in another (train/test leakage)
    """
    from components.validate import DataAnomalyError, validate_dataset

    result = validate_dataset(dataset.path, statistics.path, anomalies.path, output_schema.path, report.path,
                              report_markdown.path, schema=schema, baseline_statistics=baseline_statistics,
                              publish_uri=publish_uri, max_label_linf=max_label_linf, max_pixel_js=max_pixel_js,
                              max_leaked_images=max_leaked_images)
    for line in result["anomalies"]:
        print(f"anomaly: {line}")
    if result["anomalies"]:
        raise DataAnomalyError(f"{len(result['anomalies'])} data anomal{'y' if len(result['anomalies']) == 1 else 'ies'}, "
                               f"the run stops before training: {result['anomalies'][0]}")
    print("no data anomaly")


def component(base_image: str):
    """``validate`` as a kfp component running on ``base_image`` (the project image)."""
    return dsl.component(validate, base_image=base_image, install_kfp_package=False)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.validate",
        description="Validate a Dataset artifact before training: statistics per split, a schema (given or "
        "inferred), anomalies and drift against a baseline, as tensorflow_metadata protos, plus an "
        "HTML/Markdown report. Exit status 2 when the data has anomalies (one line each on stderr).",
    )
    texts = descriptions(validate)
    p.add_argument("--dataset", required=True, help=texts["dataset"])
    p.add_argument("--statistics", required=True, help="file to write the statistics to (binary proto)")
    p.add_argument("--anomalies", required=True, help="file to write the anomalies to (text proto)")
    p.add_argument("--output-schema", default=None, help="file to write the schema used to (text proto)")
    p.add_argument("--report", default=None, help="HTML report to write")
    p.add_argument("--report-markdown", default=None, help="the same report as Markdown")
    add_parameter_flags(p, validate)
    return p


@exit_on_error
def main(argv: "list[str] | None" = None) -> int:
    args = _parser().parse_args(argv)
    from artifacts.locations import check_flags, check_publish_target
    from artifacts.outputs import check_apart, check_output_file

    outputs = {"--statistics": args.statistics, "--anomalies": args.anomalies, "--output-schema": args.output_schema,
               "--report": args.report, "--report-markdown": args.report_markdown}
    check_flags({"--dataset": args.dataset, "--schema": args.schema, "--baseline-statistics": args.baseline_statistics,
                 **outputs}, local=("--dataset", *(flag for flag, path in outputs.items() if path is not None)))
    if args.publish_uri:
        check_publish_target(args.publish_uri, "--publish-uri")
    inputs = {"--dataset": args.dataset, "--schema": args.schema, "--baseline-statistics": args.baseline_statistics}
    check_inputs(inputs)
    check_apart(inputs, outputs)
    for path in outputs.values():
        if path is not None:
            check_output_file(path)
    result = validate_dataset(args.dataset, args.statistics, args.anomalies, args.output_schema, args.report,
                              args.report_markdown, **values(args, validate))
    for feature, (value, threshold) in result["drift"].items():
        print(f"drift of {feature}: {value:.6f} (threshold {threshold:g})")
    print(f"schema {result['schema_source']}; wrote {args.statistics}, {args.anomalies}"
          + "".join(f", {p}" for p in (args.output_schema, args.report, args.report_markdown) if p))
    for line in result["anomalies"]:
        print(f"anomaly: {line}", file=sys.stderr)
    return 2 if result["anomalies"] else 0


if __name__ == "__main__":
    sys.exit(main())
