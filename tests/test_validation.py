"""The validation gate on real MNIST: statistics, schema, anomalies, drift, and the validate step's CLI.

Clean data: two disjoint slices of MNIST's training split. Drifted data: the same images with
classes left out or added, padded to another shape, inverted, leaked into the test split, or an
empty split, each written as a Dataset artifact (``write_dataset``) as ingest writes one.
"""

from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from mlp_core.data import validation
from mlp_core.data.statistics import (
    compute_statistics,
    read_statistics,
    statistics_from_counts,
    SplitCounts,
    summaries,
    write_statistics,
)
from mlp_core.errors import UserError

CLASS_NAMES = [str(i) for i in range(10)]


def write_dataset(path: Path, splits: dict, class_names: list = CLASS_NAMES, records_per_shard: int = 1000) -> Path:
    """A Dataset artifact at ``path`` from ``{split: (uint8 images [N, H, W, C], int labels [N])}``."""
    from mlp_core.data.artifact import write_metadata
    from mlp_core.data.records import write_shards
    from artifacts.outputs import artifact_writer

    with artifact_writer(path, "dataset") as folder:
        written = {}
        for name, (images, labels) in splits.items():
            shards = write_shards(folder, name, zip(images, labels.tolist()), len(labels), records_per_shard)
            written[name] = {"num_examples": len(labels),
                             "class_counts": np.bincount(labels, minlength=len(class_names)).tolist(),
                             "shards": [s.to_dict() for s in shards]}
        shape = list(next(iter(splits.values()))[0].shape[1:])
        write_metadata(folder, {"dataset": {"name": "mnist", "version": "test"}, "image_shape": shape,
                                "image_dtype": "uint8", "num_classes": len(class_names), "class_names": class_names,
                                "splits": written})
    return path


@pytest.fixture(scope="module")
def mnist(mnist_data_dir):
    """Real MNIST arrays: the first 6,000 training and 1,000 test images."""
    import tensorflow_datasets as tfds

    def load(split):
        data = tfds.as_numpy(tfds.load("mnist", split=split, batch_size=-1, data_dir=mnist_data_dir))
        return data["image"], data["label"].astype(np.int64)

    return {"train": load("train[:6000]"), "test": load("test[:1000]")}


def _slice(arrays, start, stop):
    return arrays[0][start:stop], arrays[1][start:stop]


@pytest.fixture(scope="module")
def clean(mnist):
    """Two disjoint clean slices: ``baseline`` (train[:3000], test[:500]) and ``current`` (the next ones)."""
    return {"baseline": {"train": _slice(mnist["train"], 0, 3000), "test": _slice(mnist["test"], 0, 500)},
            "current": {"train": _slice(mnist["train"], 3000, 6000), "test": _slice(mnist["test"], 500, 1000)}}


@pytest.fixture(scope="module")
def baseline(clean, tmp_path_factory):
    """The clean baseline's validate outputs (the first run: schema inferred), as the champion would keep them."""
    from components.validate import validate_dataset

    out = tmp_path_factory.mktemp("baseline")
    dataset = write_dataset(out / "dataset", clean["baseline"])
    result = validate_dataset(dataset, out / "statistics.pb", out / "anomalies.pbtxt", out / "schema.pbtxt")
    assert result["anomalies"] == [] and result["drift"] == {}
    return {"statistics": out / "statistics.pb", "schema": out / "schema.pbtxt"}


def _validate(tmp_path, splits, baseline, class_names=CLASS_NAMES, with_baseline=True, **params):
    """Validate a Dataset made of ``splits`` against the baseline's schema (and statistics); the result dict."""
    from components.validate import validate_dataset

    dataset = write_dataset(tmp_path / "dataset", splits, class_names)
    given = {"schema": str(baseline["schema"]), **params}
    if with_baseline:
        given["baseline_statistics"] = str(baseline["statistics"])
    return validate_dataset(dataset, tmp_path / "statistics.pb", tmp_path / "anomalies.pbtxt", tmp_path / "schema.pbtxt",
                            tmp_path / "report.html", tmp_path / "report.md", **given)


# ---- statistics


def test_statistics_have_the_counts_and_round_trip(small_dataset, tmp_path):
    from mlp_core.data.artifact import load_metadata, read_split

    statistics = compute_statistics(small_dataset)
    write_statistics(statistics, tmp_path / "statistics.pb")
    assert read_statistics(tmp_path / "statistics.pb") == statistics
    metadata = load_metadata(small_dataset)
    assert [d.name for d in statistics.datasets] == ["train", "test"]
    for split, summary in summaries(statistics).items():
        images, labels = read_split(small_dataset, split)
        assert summary.num_examples == len(labels) == metadata["splits"][split]["num_examples"]
        assert list(summary.class_counts) == metadata["splits"][split]["class_counts"]
        assert summary.class_names == tuple(metadata["class_names"])
        assert summary.image_shape == (28, 28, 1) and summary.dtype == "uint8"
        assert sum(b[2] for b in summary.pixel_histogram) == images.size and len(summary.pixel_histogram) == 32
        counts, _ = np.histogram(images, bins=32, range=(0, 256))
        assert [b[2] for b in summary.pixel_histogram] == counts.tolist()
        assert summary.pixel_mean == pytest.approx(images.mean()) and summary.pixel_std == pytest.approx(images.std())
        assert (summary.pixel_min, summary.pixel_max) == (images.min(), images.max())
        assert summary.duplicates == 0 and set(summary.also_in.values()) == {0}
    # What TFDV's L-infinity comparator reads: the label's rank histogram, most frequent first.
    label = statistics.datasets[0].features[1]
    assert label.name == "label" and label.string_stats.rank_histogram.buckets[0].sample_count == max(
        metadata["splits"]["train"]["class_counts"])


def test_duplicates_and_leakage_are_counted(mnist):
    images, labels = _slice(mnist["train"], 0, 100)
    train, test = SplitCounts(10), SplitCounts(10)
    train.add(np.concatenate([images, images[:3]]), np.concatenate([labels, labels[:3]]))
    test.add(images[95:], labels[95:])
    stats = summaries(statistics_from_counts({"train": train, "test": test}, [28, 28, 1], CLASS_NAMES))
    assert stats["train"].duplicates == 3
    assert stats["test"].also_in == {"train": 5} and stats["train"].also_in == {"test": 5}


# ---- no anomaly on clean data


def test_two_clean_slices_have_no_anomaly(clean, baseline, tmp_path):
    result = _validate(tmp_path, clean["current"], baseline)
    assert result["anomalies"] == []
    linf, linf_threshold = result["drift"]["label"]
    js, js_threshold = result["drift"]["image"]
    # Well below the defaults, not just below them.
    assert linf < linf_threshold / 2 and js < js_threshold / 20, result["drift"]
    assert "no anomaly" in (tmp_path / "report.html").read_text()


# ---- each anomaly, with its one line


def _one(lines, text):
    found = [line for line in lines if text in line]
    assert len(found) == 1, f"{text!r} in {lines}"
    return found[0]


def test_a_class_missing_from_the_classes(clean, baseline, tmp_path):
    nine = {split: (x[y != 7], np.where(y[y != 7] > 7, y[y != 7] - 1, y[y != 7])) for split, (x, y) in clean["current"].items()}
    result = _validate(tmp_path, nine, baseline, class_names=[c for c in CLASS_NAMES if c != "7"], with_baseline=False)
    assert result["anomalies"] == ["class(es) '7' missing: the dataset has only '0', '1', '2', '3', '4', '5', '6', '8', '9'"]


def test_a_class_without_examples_in_a_split(clean, baseline, tmp_path):
    splits = dict(clean["current"])
    x, y = splits["train"]
    splits["train"] = (x[y != 3], y[y != 3])
    result = _validate(tmp_path, splits, baseline, with_baseline=False)
    assert result["anomalies"] == ["train: class '3' has 0 example(s), the schema wants at least 1 per class"]


def test_a_new_class(clean, baseline, tmp_path):
    splits = dict(clean["current"])
    x, y = splits["train"]
    splits["train"] = (x, np.where(np.arange(len(y)) % 10 == 0, 10, y))  # every 10th image: a class "letters"
    result = _validate(tmp_path, splits, baseline, class_names=[*CLASS_NAMES, "letters"], with_baseline=False)
    assert result["anomalies"] == ["new class(es) 'letters': not among the schema's classes "
                                   "'0', '1', '2', '3', '4', '5', '6', '7', '8', '9'"]


def test_a_changed_image_shape(clean, baseline, tmp_path):
    padded = {split: (np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), y) for split, (x, y) in clean["current"].items()}
    result = _validate(tmp_path, padded, baseline, with_baseline=False)
    assert result["anomalies"] == ["image shape is 32x32x1, the schema says 28x28x1"]


def test_a_changed_dtype(mnist, baseline):
    counts = SplitCounts(10)
    counts.add(*_slice(mnist["train"], 0, 100))
    stats = statistics_from_counts({"train": counts}, [28, 28, 1], CLASS_NAMES, dtype="uint16")
    anomalies = validation.validate_statistics(stats, validation.read_schema(baseline["schema"]))
    assert validation.anomaly_lines(anomalies) == ["image dtype is uint16, the schema says uint8"]
    assert anomalies.anomaly_info["image"].reason[0].type == validation.Type.UNEXPECTED_DATA_TYPE


def test_an_empty_split(clean, baseline, tmp_path):
    x, y = clean["current"]["test"]
    splits = {"train": clean["current"]["train"], "test": (x[:0], y[:0])}
    result = _validate(tmp_path, splits, baseline)
    assert result["anomalies"] == ["test: 0 examples, the schema wants at least 1"]


def test_train_test_leakage(clean, baseline, tmp_path):
    (train_x, train_y), (test_x, test_y) = clean["current"]["train"], clean["current"]["test"]
    leaky = {"train": (train_x, train_y), "test": (np.concatenate([test_x[:-5], train_x[:5]]),
                                                   np.concatenate([test_y[:-5], train_y[:5]]))}
    result = _validate(tmp_path / "0", leaky, baseline)
    assert result["anomalies"] == ["test: 5 image(s) also in train (train/test leakage), more than the 0 allowed"]
    assert _validate(tmp_path / "5", leaky, baseline, max_leaked_images=5)["anomalies"] == []


def test_label_distribution_drift(clean, baseline, tmp_path):
    x, y = clean["current"]["train"]
    # Every class still present, but classes 5-9 at a tenth of their share.
    keep = (y < 5) | (np.arange(len(y)) % 10 == 0)
    splits = {**clean["current"], "train": (x[keep], y[keep])}
    result = _validate(tmp_path, splits, baseline)
    line = _one(result["anomalies"], "train: label distribution drifted from the baseline: L-infinity distance")
    assert len(result["anomalies"]) == 1, result["anomalies"]
    assert result["drift"]["label"][0] > 0.05 and "> 0.05" in line
    assert result["drift"]["image"][0] < 0.01  # the pixels did not drift


def test_pixel_drift_inverted_and_shifted(clean, baseline, tmp_path):
    x, y = clean["current"]["train"]
    for name, drifted in {"inverted": 255 - x, "brighter": np.clip(x.astype(np.int16) + 32, 0, 255).astype(np.uint8)}.items():
        result = _validate(tmp_path / name, {**clean["current"], "train": (drifted, y)}, baseline)
        line = _one(result["anomalies"], "train: pixel intensities drifted from the baseline: Jensen-Shannon divergence")
        assert len(result["anomalies"]) == 1, result["anomalies"]
        assert result["drift"]["image"][0] > 0.3, (name, result["drift"])  # 0.52 and 0.81 on all of MNIST
        assert "> 0.01" in line


def test_thresholds_are_parameters(clean, baseline, tmp_path):
    result = _validate(tmp_path, clean["current"], baseline, max_label_linf=0.001, max_pixel_js=1e-7)
    assert len(result["anomalies"]) == 2
    # The schema written carries the thresholds applied (what TFDV would read from it).
    schema = validation.read_schema(tmp_path / "schema.pbtxt")
    assert schema.feature[1].drift_comparator.infinity_norm.threshold == 0.001
    assert schema.feature[0].drift_comparator.jensen_shannon_divergence.threshold == 1e-7


def test_the_anomalies_proto_is_tensorflow_metadatas(clean, baseline, tmp_path):
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    x, y = clean["current"]["train"]
    _validate(tmp_path, {**clean["current"], "train": (255 - x, y)}, baseline)
    anomalies = text_format.Parse((tmp_path / "anomalies.pbtxt").read_text(), anomalies_pb2.Anomalies())
    reason = anomalies.anomaly_info["image"].reason[0]
    assert reason.type == anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH
    assert {d.path.step[0] for d in anomalies.drift_skew_info} == {"image", "label"}
    assert anomalies.baseline.feature[0].name == "image"


# ---- the drift measures are TFDV's


def test_linf_and_js_follow_tfdvs_definitions():
    # L-infinity: each side normalized by its own total; a class absent on one side counts 0.
    assert validation.linf_distance({"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 1}) == ("a", pytest.approx(3 / 4 - 1 / 3))
    # A tie goes to the last class in name order, as TFDV's GetLInftyNorm (``>=`` over a std::map).
    assert validation.linf_distance({"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 2}) == ("c", pytest.approx(0.5))
    # Jensen-Shannon in bits: disjoint histograms are 1 bit apart, equal ones 0.
    buckets = ((0, 1, 5.0), (1, 2, 0.0))
    assert validation.js_divergence(buckets, ((0, 1, 0.0), (1, 2, 7.0))) == pytest.approx(1.0)
    assert validation.js_divergence(buckets, ((0, 1, 2.0), (1, 2, 0.0))) == 0.0
    with pytest.raises(UserError, match="other buckets"):
        validation.js_divergence(buckets, ((0, 2, 1.0), (2, 4, 1.0)))


# ---- bad input: one line, nothing written


def test_a_schema_file_that_does_not_parse(small_dataset, tmp_path):
    bad = tmp_path / "schema.pbtxt"
    bad.write_text('feature { nme: "image" }\n')
    with pytest.raises(UserError, match=r"does not parse: 1:\d+ : .*no field named \"nme\""):
        validation.read_schema(bad)
    (tmp_path / "no_image.pbtxt").write_text('feature { name: "label" }\n')
    with pytest.raises(UserError, match="has no feature 'image'"):
        validation.read_schema(tmp_path / "no_image.pbtxt")


def test_cli_exit_codes(small_dataset, clean, baseline, tmp_path):
    def cli(out, *extra):
        return run_cli("-m", "components.validate", "--dataset", str(out[0]), "--statistics", str(out[1] / "s.pb"),
                       "--anomalies", str(out[1] / "a.pbtxt"), "--report", str(out[1] / "r.html"), *extra, check=False)

    # Clean, first run (schema inferred, no baseline): exit 0, every output written.
    ok = cli((small_dataset, tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    assert all((tmp_path / "ok" / name).is_file() for name in ("s.pb", "a.pbtxt", "r.html"))
    # Inverted pixels against the baseline: exit 2, one line per anomaly, the outputs still written.
    x, y = clean["current"]["train"]
    drifted = write_dataset(tmp_path / "drifted", {**clean["current"], "train": (255 - x, y)})
    bad = cli((drifted, tmp_path / "bad"), "--schema", str(baseline["schema"]),
              "--baseline-statistics", str(baseline["statistics"]))
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [line for line in bad.stderr.splitlines() if line.startswith("anomaly: ")]
    assert len(bad.stderr.splitlines()) == 1 and "pixel intensities drifted" in bad.stderr
    assert "1 anomaly: the run stops before training" in (tmp_path / "bad" / "r.html").read_text()
    # A schema file that does not parse: one line, exit 2, nothing written.
    (tmp_path / "broken.pbtxt").write_text("feature {\n")
    broken = cli((small_dataset, tmp_path / "broken"), "--schema", str(tmp_path / "broken.pbtxt"))
    assert broken.returncode == 2
    assert broken.stderr.splitlines() == [f"error: schema {tmp_path / 'broken.pbtxt'} does not parse: "
                                          + broken.stderr.split("does not parse: ", 1)[1].strip()]
    assert not any((tmp_path / "broken").glob("*"))


def test_the_component_raises_after_writing_its_outputs(clean, baseline, tmp_path):
    """The kfp component: anomalies stop the run (it raises), and what it wrote says why."""
    from kfp import dsl

    from components.validate import DataAnomalyError, validate

    x, y = clean["current"]["train"]
    dataset = write_dataset(tmp_path / "dataset", {**clean["current"], "train": (x[y != 3], y[y != 3])})
    outputs = {name: kind(uri=str(tmp_path / name)) for name, kind in (
        ("statistics", dsl.Artifact), ("output_schema", dsl.Artifact), ("anomalies", dsl.Artifact),
        ("report", dsl.HTML), ("report_markdown", dsl.Markdown))}
    with pytest.raises(DataAnomalyError, match=r"^2 data anomalies, the run stops before training: train: class '3'"):
        validate(dataset=dsl.Dataset(uri=str(dataset)), schema=str(baseline["schema"]),
                 baseline_statistics=str(baseline["statistics"]), publish_uri="", max_label_linf=0.05,
                 max_pixel_js=0.01, max_leaked_images=0, **outputs)
    assert "L-infinity distance" in (tmp_path / "anomalies").read_text()
    assert all((tmp_path / name).is_file() for name in outputs)


def test_the_champions_schema_and_statistics_are_the_baseline(clean, baseline, tmp_path):
    """With only ``publish_uri``: the schema and statistics stored beside the champion's version (LATEST)."""
    import json
    import shutil

    from components.validate import validate_dataset

    published, version = tmp_path / "published", "20261130T000000Z-0123456789ab"
    (published / version).mkdir(parents=True)
    (published / version / "manifest.json").write_text(json.dumps(
        {"version": version, "content_sha256": "0" * 64, "metrics": {"test_accuracy": 0.95}, "config": {},
         "dataset": {}, "files": ["params.npz"]}))
    shutil.copy(baseline["statistics"], published / version / validation.STATISTICS_FILE)
    shutil.copy(baseline["schema"], published / version / validation.SCHEMA_FILE)
    (published / "LATEST").write_text(version + "\n")
    x, y = clean["current"]["train"]
    dataset = write_dataset(tmp_path / "dataset", {**clean["current"], "train": (255 - x, y)})
    result = validate_dataset(dataset, tmp_path / "s.pb", tmp_path / "a.pbtxt", publish_uri=str(published))
    assert result["schema_source"] == f"from {published / version / validation.SCHEMA_FILE}"
    assert result["baseline_source"] == str(published / version / validation.STATISTICS_FILE)
    assert [line.split(":")[1].strip() for line in result["anomalies"]] == ["pixel intensities drifted from the baseline"]
    # Nothing published yet: the schema is inferred and drift is not measured.
    empty = validate_dataset(dataset, tmp_path / "s2.pb", tmp_path / "a2.pbtxt", publish_uri=str(tmp_path / "none"))
    assert empty["anomalies"] == [] and empty["drift"] == {} and empty["baseline_source"] is None
