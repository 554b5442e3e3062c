"""The evaluation report, per-class metrics and the blessing gate, on real MNIST."""

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import run_cli
from mlp_core.blessing import bless
from mlp_core.metrics import per_class_metrics


@pytest.fixture(scope="module")
def evaluated(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluated")
    run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(out / "model"), "--epochs", "2")
    result = run_cli("-m", "components.evaluate", "--model", str(out / "model"), "--dataset", str(small_dataset),
                     "--metrics", str(out / "metrics.json"), "--report", str(out / "report.html"),
                     "--report-markdown", str(out / "report.md"), "--blessing-threshold", "0.3")
    return out, result


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.cells, self._in_cell = [], [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self.tables.append(attrs.get("id"))
        self._in_cell = tag in ("td", "th")

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


def test_html_report_has_three_plots_and_the_metrics_tables(evaluated):
    out, _ = evaluated
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert page.tables == ["summary", "per-class"]
    assert [i["alt"] for i in page.images] == [
        "Training curves", "Confusion matrix", "Most confidently misclassified test images"]
    for image in page.images:
        png = base64.b64decode(image["src"].split("base64,", 1)[1])
        assert png.startswith(b"\x89PNG") and len(png) > 2000
    metrics = json.loads((out / "metrics.json").read_text())
    assert f"{metrics['test_accuracy']:.4f}" in page.cells
    assert "blessed" in page.cells and "yes" in page.cells


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
