"""The data schema and its anomalies, as tensorflow_metadata's ``Schema`` and ``Anomalies`` protos.

The schema is inferred from the first run's statistics (``infer_schema``) or read from a file (``read_schema``); drift
(TFDV's definitions) compares this run's train split with the baseline's. Thresholds and their measurements: design.md.
"""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from artifacts import storage
from mlp_core.data.statistics import IMAGE, LABEL, SplitSummary, summaries
from mlp_core.errors import UserError
from mlp_core.report import class_distribution, value_histograms

DEFAULT_MAX_LABEL_LINF = 0.05
DEFAULT_MAX_PIXEL_JS = 0.01
DEFAULT_MAX_LEAKED_IMAGES = 0
CLASS_NAMES_DOMAIN = "class_names"
EXAMPLES_PER_CLASS_DOMAIN = "examples_per_class"
# Drift is TFDV's "between different days of training data": this run's train split against the baseline's.
DRIFT_SPLIT = "train"
# The files beside a published champion that make the next run's baseline.
STATISTICS_FILE = "statistics.pb"
SCHEMA_FILE = "schema.pbtxt"
DTYPE_RANGES = {"uint8": (0, 255), "uint16": (0, 65535), "int8": (-128, 127)}

Type = anomalies_pb2.AnomalyInfo


# ---- the schema


def infer_schema(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> schema_pb2.Schema:
    """The schema of the data these statistics describe (their first split's shape, dtype and classes)."""
    first = next(iter(summaries(statistics).values()))
    schema = schema_pb2.Schema()
    image = schema.feature.add(name=IMAGE, type=schema_pb2.INT)
    image.presence.min_fraction, image.presence.min_count = 1.0, 1
    for size in first.image_shape:
        image.shape.dim.add(size=size)
    low, high = DTYPE_RANGES.get(first.dtype, (int(first.pixel_min), int(first.pixel_max)))
    image.int_domain.name, image.int_domain.min, image.int_domain.max = first.dtype, low, high
    label = schema.feature.add(name=LABEL, type=schema_pb2.INT)
    label.presence.min_fraction, label.presence.min_count = 1.0, 1
    label.int_domain.min, label.int_domain.max, label.int_domain.is_categorical = 0, len(first.class_names) - 1, True
    schema.string_domain.add(name=CLASS_NAMES_DOMAIN, value=first.class_names)
    schema.int_domain.add(name=EXAMPLES_PER_CLASS_DOMAIN, min=1)
    schema.dataset_constraints.min_examples_count = 1
    return schema


def with_thresholds(schema: schema_pb2.Schema, max_label_linf: float, max_pixel_js: float) -> schema_pb2.Schema:
    """A copy of ``schema`` whose drift comparators carry these thresholds (what TFDV would apply)."""
    result = schema_pb2.Schema()
    result.CopyFrom(schema)
    _schema_feature(result, LABEL).drift_comparator.infinity_norm.threshold = max_label_linf
    _schema_feature(result, IMAGE).drift_comparator.jensen_shannon_divergence.threshold = max_pixel_js
    return result


@dataclass(frozen=True)
class Expected:
    """What a schema asks of the data, as plain values."""

    image_shape: tuple[int, ...]
    dtype: str
    value_range: tuple[int, int]
    class_names: tuple[str, ...]
    min_examples_per_class: int
    min_examples: int


def _schema_feature(schema: schema_pb2.Schema, name: str, where: str = "schema"):
    for feature in schema.feature:
        if feature.name == name:
            return feature
    raise UserError(f"{where} has no feature {name!r}")


def expected(schema: schema_pb2.Schema, where: str = "schema") -> Expected:
    """What ``schema`` asks for; ``UserError`` naming the first thing it lacks."""
    image = _schema_feature(schema, IMAGE, where)
    if not image.shape.dim:
        raise UserError(f"{where}: feature 'image' has no shape")
    if not image.HasField("int_domain") or not image.int_domain.name:
        raise UserError(f"{where}: feature 'image' needs an int_domain named after its dtype (e.g. \"uint8\")")
    classes = [d for d in schema.string_domain if d.name == CLASS_NAMES_DOMAIN]
    if not classes or not classes[0].value:
        raise UserError(f"{where} has no string_domain {CLASS_NAMES_DOMAIN!r} listing the classes")
    per_class = [d.min for d in schema.int_domain if d.name == EXAMPLES_PER_CLASS_DOMAIN]
    return Expected(
        image_shape=tuple(d.size for d in image.shape.dim),
        dtype=image.int_domain.name,
        value_range=(image.int_domain.min, image.int_domain.max),
        class_names=tuple(classes[0].value),
        min_examples_per_class=per_class[0] if per_class else 0,
        min_examples=schema.dataset_constraints.min_examples_count,
    )


def schema_text(schema: schema_pb2.Schema) -> str:
    return text_format.MessageToString(schema)


def read_schema(uri: str | Path) -> schema_pb2.Schema:
    """A text-format ``Schema`` from a path or object-store URI; ``UserError`` in one line if it cannot be used."""
    try:
        text = storage.read_bytes(str(uri), storage.SCHEMA).decode()
    except storage.StorageError as e:
        raise UserError(f"cannot read the schema: {e}") from None
    except UnicodeDecodeError:
        raise UserError(f"schema {uri} is not text (a text-format tensorflow_metadata Schema)") from None
    schema = schema_pb2.Schema()
    try:
        text_format.Parse(text, schema)
    except text_format.ParseError as e:
        raise UserError(f"schema {uri} does not parse: {str(e).splitlines()[0][:160]}") from None  # short: it may quote the file
    expected(schema, f"schema {uri}")
    return schema


# ---- drift (TFDV's definitions)


def linf_distance(counts: dict[str, float], baseline: dict[str, float]) -> tuple[str, float]:
    """``(class, distance)``: TFDV's L-infinity distance of the counts, each side normalized by its own total."""
    total, base_total = sum(counts.values()) or 1.0, sum(baseline.values()) or 1.0
    best = ("", 0.0)
    for name in sorted(set(counts) | set(baseline)):
        difference = abs(counts.get(name, 0.0) / total - baseline.get(name, 0.0) / base_total)
        if difference >= best[1]:
            best = (name, difference)
    return best


def js_divergence(histogram: tuple, baseline: tuple) -> float:
    """TFDV's Jensen-Shannon divergence in bits of two histograms of the same ``(low, high, count)`` buckets, capped at 1."""
    if [b[:2] for b in histogram] != [b[:2] for b in baseline]:
        raise UserError("the pixel histograms have other buckets than the baseline's; they cannot be compared")
    p = np.array([b[2] for b in histogram], np.float64)
    q = np.array([b[2] for b in baseline], np.float64)
    if p.sum() == 0 or q.sum() == 0:
        raise UserError("an empty histogram cannot be compared")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x):
        nonzero = x > 0
        return float(np.sum(x[nonzero] * np.log2(x[nonzero] / m[nonzero])))

    return min((kl(p) + kl(q)) / 2, 1.0)


# ---- anomalies


class _Anomalies:
    """Builds an ``Anomalies`` proto, one reason per anomaly."""

    def __init__(self, schema: schema_pb2.Schema):
        self.proto = anomalies_pb2.Anomalies(baseline=schema, anomaly_name_format=anomalies_pb2.Anomalies.SERIALIZED_PATH)

    def add(self, feature: "str | None", kind: int, short: str, description: str) -> None:
        if feature is None:
            info = self.proto.dataset_anomaly_info
        else:
            info = self.proto.anomaly_info[feature]
            if not info.path.step:
                info.path.step.append(feature)
        info.severity = Type.ERROR
        info.reason.add(type=kind, short_description=short, description=description)
        info.short_description = short if len(info.reason) == 1 else "Multiple errors"
        info.description = " ".join(r.description for r in info.reason)

    def measure(self, feature: str, kind: int, value: float, threshold: float) -> None:
        drift = self.proto.drift_skew_info.add()
        drift.path.step.append(feature)
        drift.drift_measurements.add(type=kind, value=value, threshold=threshold)


def validate_statistics(statistics: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema,
                        baseline: "statistics_pb2.DatasetFeatureStatisticsList | None" = None,
                        max_label_linf: float = DEFAULT_MAX_LABEL_LINF, max_pixel_js: float = DEFAULT_MAX_PIXEL_JS,
                        max_leaked_images: int = DEFAULT_MAX_LEAKED_IMAGES) -> anomalies_pb2.Anomalies:
    """The anomalies of ``statistics`` against ``schema``, and drift against ``baseline`` when given."""
    want = expected(schema)
    splits = summaries(statistics)
    result = _Anomalies(with_thresholds(schema, max_label_linf, max_pixel_js))
    first = next(iter(splits.values()))
    _check_images(result, first, want)
    _check_classes(result, splits, want)
    _check_leakage(result, splits, max_leaked_images)
    if baseline is not None:
        _check_drift(result, splits, summaries(baseline, "baseline statistics"), max_label_linf, max_pixel_js)
    return result.proto


def _check_images(result: _Anomalies, first: SplitSummary, want: Expected) -> None:
    """Shape and dtype: facts of the whole dataset (its metadata), checked once."""
    if first.image_shape != want.image_shape:
        result.add(IMAGE, Type.INVALID_FEATURE_SHAPE, "Image shape changed",
                   f"image shape is {_shape(first.image_shape)}, the schema says {_shape(want.image_shape)}")
    if first.dtype != want.dtype:
        result.add(IMAGE, Type.UNEXPECTED_DATA_TYPE, "Image dtype changed",
                   f"image dtype is {first.dtype}, the schema says {want.dtype}")


def _check_classes(result: _Anomalies, splits: dict[str, SplitSummary], want: Expected) -> None:
    first = next(iter(splits.values()))
    if new := [c for c in first.class_names if c not in want.class_names]:
        result.add(LABEL, Type.ENUM_TYPE_UNEXPECTED_STRING_VALUES, "New class",
                   f"new class(es) {_names(new)}: not among the schema's classes {_names(want.class_names)}")
    if missing := [c for c in want.class_names if c not in first.class_names]:
        result.add(LABEL, Type.CUSTOM_VALIDATION, "Class missing",
                   f"class(es) {_names(missing)} missing: the dataset has only {_names(first.class_names)}")
    low, high = want.value_range
    least = max(want.min_examples, 1)
    for split in splits.values():
        if split.num_examples < least:
            result.add(None, Type.DATASET_LOW_NUM_EXAMPLES, "Empty split" if not split.num_examples else "Too few examples",
                       f"{split.name}: {split.num_examples} examples, the schema wants at least {least}")
            continue
        few = [(c, n) for c, n in zip(split.class_names, split.class_counts)
               if c in want.class_names and n < want.min_examples_per_class]
        if few:
            shown = ", ".join(f"{c!r} has {n}" for c, n in few)
            short = "Class missing" if any(n == 0 for _, n in few) else "Too few examples of a class"
            result.add(LABEL, Type.CUSTOM_VALIDATION, short, f"{split.name}: class {shown} example(s), "
                       f"the schema wants at least {want.min_examples_per_class} per class")
        if split.pixel_min < low or split.pixel_max > high:
            kind = Type.INT_TYPE_SMALL_INT if split.pixel_min < low else Type.INT_TYPE_BIG_INT
            result.add(IMAGE, kind, "Pixel values out of range",
                       f"{split.name}: pixel values {split.pixel_min:g}..{split.pixel_max:g}, "
                       f"outside the schema's {low}..{high}")


def _check_leakage(result: _Anomalies, splits: dict[str, SplitSummary], max_leaked_images: int) -> None:
    names = list(splits)
    for later_index, later in enumerate(names):
        for earlier in names[:later_index]:
            leaked = splits[later].also_in.get(earlier, 0)
            if leaked > max_leaked_images:
                result.add(None, Type.CUSTOM_VALIDATION, "Leakage between splits",
                           f"{later}: {leaked} image(s) also in {earlier} ({earlier}/{later} leakage), "
                           f"more than the {max_leaked_images} allowed")


def _check_drift(result: _Anomalies, splits: dict[str, SplitSummary], baseline: dict[str, SplitSummary],
                 max_label_linf: float, max_pixel_js: float) -> None:
    if DRIFT_SPLIT not in baseline:
        raise UserError(f"the baseline statistics have no {DRIFT_SPLIT} split (they have {', '.join(baseline)})")
    current, base = splits.get(DRIFT_SPLIT), baseline[DRIFT_SPLIT]
    if current is None or not current.num_examples or not base.num_examples:
        return  # an empty or absent split is its own anomaly; there is no distribution to compare
    name, distance = linf_distance(current.label_counts, base.label_counts)
    result.measure(LABEL, anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY, distance, max_label_linf)
    if distance > max_label_linf:
        result.add(LABEL, Type.COMPARATOR_L_INFTY_HIGH, "High Linfty distance between current and previous",
                   f"{DRIFT_SPLIT}: label distribution drifted from the baseline: L-infinity distance {distance:.4f} "
                   f"> {max_label_linf:g} (class {name!r}: {_share(current.label_counts, name):.1%} of examples, "
                   f"baseline {_share(base.label_counts, name):.1%})")
    divergence = js_divergence(current.pixel_histogram, base.pixel_histogram)
    result.measure(IMAGE, anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE, divergence, max_pixel_js)
    if divergence > max_pixel_js:
        result.add(IMAGE, Type.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
                   "High approximate Jensen-Shannon divergence between current and previous",
                   f"{DRIFT_SPLIT}: pixel intensities drifted from the baseline: Jensen-Shannon divergence "
                   f"{divergence:.4f} > {max_pixel_js:g} (mean pixel {current.pixel_mean:.1f}, "
                   f"baseline {base.pixel_mean:.1f})")


def anomaly_lines(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One line per anomaly: the dataset's first, then each feature's."""
    lines = [r.description for r in anomalies.dataset_anomaly_info.reason]
    for feature in sorted(anomalies.anomaly_info):
        lines += [r.description for r in anomalies.anomaly_info[feature].reason]
    return lines


def drift_measurements(anomalies: anomalies_pb2.Anomalies) -> dict[str, tuple[float, float]]:
    """``{"label": (L-infinity, threshold), "image": (JS divergence, threshold)}`` as measured (empty: no baseline)."""
    return {d.path.step[-1]: (m.value, m.threshold) for d in anomalies.drift_skew_info for m in d.drift_measurements}


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _names(names) -> str:
    return ", ".join(repr(n) for n in names)


def _share(counts: dict[str, float], name: str) -> float:
    return counts.get(name, 0.0) / (sum(counts.values()) or 1.0)


# ---- the report (HTML for the KFP and Vertex AI UIs, and the same as Markdown)


def report_plots(statistics: statistics_pb2.DatasetFeatureStatisticsList,
                 baseline: "statistics_pb2.DatasetFeatureStatisticsList | None" = None) -> dict[str, str]:
    """Caption -> base64 PNG: label shares per split (and the baseline's train split), pixel histograms likewise."""
    series = {name: s for name, s in summaries(statistics).items() if s.num_examples}
    if baseline is not None:
        base = summaries(baseline, "baseline statistics").get(DRIFT_SPLIT)
        if base is not None and base.num_examples:
            series[f"baseline {DRIFT_SPLIT}"] = base
    if not series:
        return {}
    first = next(iter(series.values()))
    classes = list(dict.fromkeys(c for s in series.values() for c in s.class_names))
    labels = {name: [_share(s.label_counts, c) for c in classes] for name, s in series.items()}
    edges = [first.pixel_histogram[0][0]] + [b[1] for b in first.pixel_histogram]
    pixels = {name: [b[2] / (sum(x[2] for x in s.pixel_histogram) or 1) for b in s.pixel_histogram]
              for name, s in series.items() if [b[:2] for b in s.pixel_histogram] == [b[:2] for b in first.pixel_histogram]}
    against = " and the baseline" if baseline is not None else ""
    return {
        f"Label distribution per split{against}": class_distribution(classes, labels),
        f"Pixel-intensity histogram per split{against}": value_histograms(edges, pixels, "Pixel intensities",
                                                                          "pixel value"),
    }


def _split_rows(splits: dict[str, SplitSummary]) -> list[tuple[str, ...]]:
    rows = [("split", "examples", "classes with examples", "pixel mean", "pixel std", "pixel min..max",
             "duplicate images", "images also in another split")]
    for s in splits.values():
        also = ", ".join(f"{other}: {n}" for other, n in s.also_in.items()) or "-"
        rows.append((s.name, str(s.num_examples), f"{sum(1 for n in s.class_counts if n)} of {len(s.class_names)}",
                     f"{s.pixel_mean:.2f}", f"{s.pixel_std:.2f}", f"{s.pixel_min:g}..{s.pixel_max:g}",
                     str(s.duplicates), also))
    return rows


def _class_rows(splits: dict[str, SplitSummary], base: "SplitSummary | None") -> list[tuple[str, ...]]:
    names = list(dict.fromkeys(c for s in splits.values() for c in s.class_names))
    rows = [("class", *splits, *((f"baseline {DRIFT_SPLIT} share",) if base else ()))]
    for c in names:
        counts = [str(dict(zip(s.class_names, s.class_counts)).get(c, 0)) for s in splits.values()]
        rows.append((c, *counts, *((f"{_share(base.label_counts, c):.2%}",) if base else ())))
    return rows


def render_report(statistics: statistics_pb2.DatasetFeatureStatisticsList, anomalies: anomalies_pb2.Anomalies,
                  baseline: "statistics_pb2.DatasetFeatureStatisticsList | None" = None,
                  schema_source: str = "inferred from these statistics", title: str = "Data validation") -> tuple[str, str]:
    """``(html, markdown)`` of the validation report: verdict, anomalies, drift, per-split and per-class tables, plots."""
    e = html_lib.escape
    splits = summaries(statistics)
    base = summaries(baseline, "baseline statistics").get(DRIFT_SPLIT) if baseline is not None else None
    lines = anomaly_lines(anomalies)
    verdict = (f"{len(lines)} anomal{'y' if len(lines) == 1 else 'ies'}: the run stops before training" if lines
               else "no anomaly: the data may be trained on")
    drift = drift_measurements(anomalies)
    drift_rows = [("measure", "value", "threshold", "")] + [
        (what, f"{drift[feature][0]:.6f}", f"{drift[feature][1]:g}",
         "drifted" if drift[feature][0] > drift[feature][1] else "ok")
        for feature, what in ((LABEL, "label distribution: L-infinity distance"),
                              (IMAGE, "pixel intensities: Jensen-Shannon divergence (bits)")) if feature in drift]
    baseline_text = (f"{DRIFT_SPLIT} split against the baseline's ({base.num_examples} examples)" if base
                     else "no baseline statistics: drift not measured (the first run, or no champion's statistics)")
    tables = {"Splits": _split_rows(splits), "Classes (examples per split)": _class_rows(splits, base)}
    if len(drift_rows) > 1:
        tables = {"Drift": drift_rows, **tables}
    plots = report_plots(statistics, baseline)
    schema = schema_text(anomalies.baseline)

    def html_table(rows):
        head = "".join(f"<th>{e(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
        return f"<table><tr>{head}</tr>{body}</table>"

    items = "".join(f"<li>{e(line)}</li>" for line in lines)
    figures = "".join(f'<figure><img alt="{e(c)}" src="data:image/png;base64,{png}"><figcaption>{e(c)}</figcaption>'
                      "</figure>" for c, png in plots.items())
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:1em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}figure{{margin:1em 0}}
.bad{{color:#a00}}.good{{color:#070}}pre{{background:#f6f6f6;padding:.5em}}</style></head>
<body><h1>{e(title)}</h1>
<p id="verdict" class="{'bad' if lines else 'good'}"><b>{e(verdict)}</b></p>
{f'<ul id="anomalies">{items}</ul>' if lines else ''}
<p>Drift: {e(baseline_text)}. Schema: {e(schema_source)}.</p>
{''.join(f'<h2>{e(name)}</h2>{html_table(rows)}' for name, rows in tables.items())}
<h2>Plots</h2>{figures}
<h2>Schema</h2><pre>{e(schema)}</pre>
</body></html>
"""

    def md_table(rows):
        return ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0]),
                *("| " + " | ".join(r) + " |" for r in rows[1:])]

    md = [f"# {title}", "", f"**{verdict}**", ""] + [f"- {line}" for line in lines] + ([""] if lines else [])
    md += [f"Drift: {baseline_text}. Schema: {schema_source}.", ""]
    for name, rows in tables.items():
        md += [f"## {name}", "", *md_table(rows), ""]
    md += ["## Plots", ""] + [f"![{c}](data:image/png;base64,{png})\n" for c, png in plots.items()]
    md += ["## Schema", "", "```", schema.rstrip(), "```"]
    return page, "\n".join(md) + "\n"
