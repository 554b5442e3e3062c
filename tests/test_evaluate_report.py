"""The evaluation report, per-class metrics and the blessing gate, on real MNIST."""

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import run_cli, run_main
from mlp_core.blessing import bless
from mlp_core.metrics import per_class_metrics


@pytest.fixture(scope="module")
def evaluated(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluated")
    run_main("-m", "components.train", "--dataset", str(small_dataset), "--model", str(out / "model"), "--epochs", "2",
             "--step-size", "0.05", "--batch-size", "64", "--seed", "3", "--tensorboard", str(out / "tensorboard"))
    result = run_main("-m", "components.evaluate", "--model", str(out / "model"), "--dataset", str(small_dataset),
                     "--metrics", str(out / "metrics.json"), "--report", str(out / "report.html"),
                     "--report-markdown", str(out / "report.md"), "--blessing-threshold", "0.3")
    return out, result


class _Page(HTMLParser):
    """The page as a browser reads it: its images, its tables' ids, every cell, and each table's rows."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.cells, self._in_cell = [], [], [], False
        self.rows: dict[str, dict[str, str]] = {}  # table id -> {first cell: second cell}
        self._row: list[str] = []
        self.text: dict[str, str] = {}  # element id -> its text (paragraphs)
        self._in_id = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self.tables.append(attrs.get("id"))
        elif tag == "tr":
            self._row = []
        elif tag == "p" and attrs.get("id"):
            self._in_id = attrs["id"]
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        if tag == "tr" and len(self._row) == 2:
            self.rows.setdefault(self.tables[-1], {})[self._row[0]] = self._row[1]
        elif tag == "p":
            self._in_id = None

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.cells.append(data.strip())
            self._row.append(data.strip())
        if self._in_id:
            self.text[self._in_id] = self.text.get(self._in_id, "") + data


def test_html_report_has_three_plots_and_the_metrics_tables(evaluated):
    out, _ = evaluated
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert page.tables == ["run", "summary", "dataset", "hyperparameters", "per-class"]
    assert [i["alt"] for i in page.images] == [
        "Training curves", "Confusion matrix", "Most confidently misclassified test images"]
    for image in page.images:
        png = base64.b64decode(image["src"].split("base64,", 1)[1])
        assert png.startswith(b"\x89PNG") and len(png) > 2000
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"{metrics['test_accuracy']:.4f}" in page.cells
    assert "blessed" in page.cells and "yes" in page.cells


def test_report_says_which_run_data_and_settings_its_numbers_are_of(evaluated, small_dataset):
    """The run, the dates (UTC), the data and its fingerprint, the hyperparameters, the champion, the loss's meaning."""
    from datetime import datetime, timedelta, timezone

    from mlp_core.data.artifact import load_metadata
    from mlp_core.report import data_fingerprint

    out, _ = evaluated
    page = _Page()
    page.feed((out / "report.html").read_text())
    run, data, hyper, summary = (page.rows[t] for t in ("run", "dataset", "hyperparameters", "summary"))
    metrics = json.loads((out / "metrics.json").read_text())
    marker = json.loads((out / "model" / "_COMPLETE.json").read_text())

    assert run["run id"].startswith("not recorded")  # trained by the CLI, not a pipeline run
    assert run["model"] == str(out / "model")
    assert run["trained"] == datetime.fromisoformat(marker["completed_at"]).strftime("%Y-%m-%d %H:%M:%S UTC")
    evaluated_at = datetime.strptime(run["evaluated"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc)
    assert timedelta(0) <= datetime.now(timezone.utc) - evaluated_at < timedelta(hours=1)

    metadata = load_metadata(small_dataset)
    shards = {split: [s["sha256"] for s in info["shards"]] for split, info in metadata["splits"].items()}
    assert data["dataset"] == "mnist 3.0.1"
    assert data["source"] == "TensorFlow Datasets mnist 3.0.1: train[:512], test[:256]"
    assert data["examples"] == "train 512, test 256"
    assert data["fingerprint (sha256 of its shards' sha256s)"] == data_fingerprint(shards) == metrics["dataset"]["fingerprint"]
    assert data["test split sha256 (what champions are compared on)"] == metrics["test_set_sha256"]
    assert not any(k.startswith("the model was trained on other data") for k in data)

    config = json.loads((out / "model" / "config.json").read_text())
    assert hyper == {"layer_sizes": "784-512-512-10", "step_size": "0.05", "batch_size": "64", "epochs": "2",
                     "seed": "3", "init_scale": str(config["init_scale"]), "shuffle": "yes"}
    assert metrics["hyperparameters"] == config

    assert summary["champion"] == "none yet" and summary["blessed"] == "yes"
    assert "the usual cross-entropy divided by 10" in page.text["loss"]
    assert "-mean(log_softmax(logits) * one_hot(labels))" in page.text["loss"]


def test_report_names_the_run_and_the_champion_it_was_compared_with(small_dataset, tmp_path):
    """A pipeline's run id and Model URI; a champion published from another model, scored on this split."""
    from components.evaluate import evaluate_on_dataset
    from components.publish import publish_model

    run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(tmp_path / "champion"),
            "--epochs", "1")
    first = evaluate_on_dataset(tmp_path / "champion", small_dataset, blessing_threshold=0.1)
    publish_model(tmp_path / "champion", str(tmp_path / "published"), first["test_accuracy"],
                  test_loss=first["test_loss"])
    version = (tmp_path / "published" / "LATEST").read_text().strip()
    result = evaluate_on_dataset(tmp_path / "champion", small_dataset, report=tmp_path / "report.html",
                                 report_markdown=tmp_path / "report.md",
                                 run_id="3f2a9c1e-run", model_uri="minio://mlpipeline/v2/artifacts/run/train/model",
                                 blessing_threshold=0.1, publish_uri=str(tmp_path / "published"))
    page = _Page()
    page.feed((tmp_path / "report.html").read_text())
    assert page.rows["run"]["run id"] == "3f2a9c1e-run"
    assert page.rows["run"]["model"] == "minio://mlpipeline/v2/artifacts/run/train/model"
    summary = page.rows["summary"]
    assert summary["champion"] == version
    assert summary["champion's test accuracy (this split)"] == f"{result['champion']['test_accuracy']:.4f}"
    assert summary["blessed"] == "yes" and summary["why"] == result["reason"]
    markdown = (tmp_path / "report.md").read_text()
    for line in ("| run id | 3f2a9c1e-run |", f"| champion | {version} |",
                 f"| champion's test accuracy (this split) | {result['champion']['test_accuracy']:.4f} |",
                 f"| fingerprint (sha256 of its shards' sha256s) | {result['dataset']['fingerprint']} |",
                 "| layer_sizes | 784-512-512-10 |", "| epochs | 1 |"):
        assert line in markdown, line


def test_markdown_report_is_the_same_report(evaluated):
    out, _ = evaluated
    markdown = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"| test accuracy | {metrics['test_accuracy']:.4f} |" in markdown
    assert markdown.count("](data:image/png;base64,") == 3
    assert markdown.count("\n| ") >= 4 + 10  # summary rows and one row per class


def test_per_class_metrics_match_a_hand_computed_confusion_matrix(evaluated, small_dataset):
    out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    from mlp_core.data.artifact import read_split
    from mlp_core.model_io import load_model
    from mlp_core.model import batched_predict

    images, labels = read_split(small_dataset, "test")
    predicted = np.argmax(np.asarray(batched_predict(load_model(out / "model")[0], images.reshape(len(images), -1))), axis=1)
    matrix = np.zeros((10, 10), int)
    for t, p in zip(labels, predicted):
        matrix[t, p] += 1
    assert metrics["confusion_matrix"] == matrix.tolist()
    for digit, row in enumerate(metrics["per_class"]):
        tp = matrix[digit, digit]
        precision = tp / matrix[:, digit].sum() if matrix[:, digit].sum() else 0.0
        recall = tp / matrix[digit].sum()
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == matrix[digit].sum()


def test_per_class_metrics_by_hand():
    rows = per_class_metrics([[3, 1], [0, 0]], ["a", "b"])
    assert rows[0] == {"class": "a", "precision": 1.0, "recall": 0.75, "f1": pytest.approx(6 / 7), "support": 4}
    assert rows[1] == {"class": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_blessing_rules():
    assert bless(0.96, 0.95, 0.002, None)[0]  # first run: threshold only
    assert not bless(0.94, 0.95, 0.002, None)[0]
    assert not bless(0.960, 0.95, 0.002, 0.9700)[0]  # worse than the champion beyond tolerance
    assert bless(0.9681, 0.95, 0.002, 0.9700)[0]  # within tolerance
    blessed, reason = bless(0.9700, 0.95, 0.002, 0.9700)  # equal
    assert blessed and "champion 0.9700" in reason
