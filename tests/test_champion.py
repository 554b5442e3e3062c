"""The champion re-scored on today's test set: evaluate scores it beside the new model, publish follows that decision.

Real MNIST slices: a champion trained and published from one slice, a new model trained and evaluated on
another; a dataset of other classes and another image shape (14x14x3, three named classes, made from MNIST
digits) whose champion is incomparable; the same through the Model Registry (stand-in) and Cloud Storage.
"""

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import run_cli
from mlp_core.data.artifact import read_split
from components.publish import LATEST, publish_model, read_champion
from uploads import upload_tree

SLICE_B = {"train_split": "train[512:1024]", "test_split": "test[256:512]"}
NAMED = ["zero", "one", "two"]  # the classes of the 14x14x3 dataset: MNIST's digits 0, 1 and 2


@pytest.fixture(scope="module")
def slice_b(mnist_data_dir, tmp_path_factory):
    """A second slice of real MNIST: other training images, another test split (256 images)."""
    from components.ingest import ingest_dataset

    out = tmp_path_factory.mktemp("slice-b") / "dataset"
    ingest_dataset(out, tfds_data_dir=mnist_data_dir, records_per_shard=200, progress=False, **SLICE_B)
    return out


@pytest.fixture(scope="module")
def named_rgb(small_dataset, tmp_path_factory):
    """A Dataset of 14x14x3 images in three named classes, from the MNIST slice's digits 0, 1 and 2."""
    from mlp_core.data.artifact import write_metadata
    from mlp_core.data.records import write_shards
    from artifacts.outputs import artifact_writer

    out = tmp_path_factory.mktemp("named-rgb") / "dataset"
    splits = {}
    with artifact_writer(out, "dataset") as folder:
        for split in ("train", "test"):
            images, labels = read_split(small_dataset, split)
            keep = labels < len(NAMED)
            small = images[keep].reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).astype(np.uint8)  # 2x2 means
            rgb = np.stack([small, 255 - small, small // 2], axis=-1)  # three channels that differ
            shards = write_shards(folder, split, zip(rgb, labels[keep].tolist()), len(rgb), 64)
            splits[split] = {"num_examples": len(rgb), "class_counts": np.bincount(labels[keep], minlength=3).tolist(),
                             "shards": [s.to_dict() for s in shards]}
        write_metadata(folder, {"dataset": {"name": "digits-rgb", "version": "1.0.0"}, "image_shape": [14, 14, 3],
                                "image_dtype": "uint8", "num_classes": len(NAMED), "class_names": NAMED,
                                "splits": splits})
    return out


def _train(dataset, model, *flags):
    run_cli("-m", "components.train", "--dataset", str(dataset), "--model", str(model), *flags)
    return model


def _evaluate(model, dataset, out, *flags, check=True):
    result = run_cli("-m", "components.evaluate", "--model", str(model), "--dataset", str(dataset),
                     "--metrics", str(out / "metrics.json"), "--report", str(out / "report.html"),
                     "--report-markdown", str(out / "report.md"), "--blessing-threshold", "0.3", *flags, check=check)
    return result, json.loads((out / "metrics.json").read_text())


def _scored_independently(model_dir, dataset):
    """``(accuracy, recall per class)`` of a Model artifact on a Dataset's test split, with numpy alone."""
    from mlp_core.model_io import load_model

    params = load_model(model_dir)[0]
    images, labels = read_split(dataset, "test")
    x = images.reshape(len(images), -1).astype(np.float32)
    for w, b in params[:-1]:
        x = np.maximum(x @ np.asarray(w).T + b, 0)
    predicted = np.argmax(x @ np.asarray(params[-1][0]).T + params[-1][1], axis=1)
    recall = [float(np.mean(predicted[labels == c] == c)) for c in range(int(labels.max()) + 1)]
    return float(np.mean(predicted == labels)), recall


class _Tables(HTMLParser):
    """Each table of a page by id: its rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._table, self._row, self._cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture(scope="module")
def champion(small_dataset, tmp_path_factory):
    """A model trained on the first MNIST slice, evaluated there and published: the champion."""
    work = tmp_path_factory.mktemp("champion")
    model = _train(small_dataset, work / "model", "--epochs", "1")
    _, metrics = _evaluate(model, small_dataset, work, "--publish-uri", str(work / "published"))
    assert metrics["champion"] is None and metrics["champion_version"] == "" and metrics["blessed"]
    out = run_cli("-m", "components.publish", "--model", str(model), "--publish-uri", str(work / "published"),
                  "--test-metrics", str(work / "metrics.json")).stdout
    version = (work / "published" / LATEST).read_text().strip()
    assert f"published {version}" in out and "LATEST moved to it (no champion yet)" in out
    return work / "published", version, model


@pytest.fixture(scope="module")
def challenger(slice_b, tmp_path_factory):
    return _train(slice_b, tmp_path_factory.mktemp("challenger") / "model", "--epochs", "2", "--seed", "1")


def test_the_champion_is_scored_on_this_runs_test_split(champion, challenger, slice_b, small_dataset, tmp_path):
    published, version, champion_model = champion
    result, metrics = _evaluate(challenger, slice_b, tmp_path, "--publish-uri", str(published))
    accuracy, recall = _scored_independently(published / version, slice_b)
    stored = read_champion(str(published))["metrics"]["test_accuracy"]  # scored on the first slice's test split
    assert metrics["champion_version"] == version == metrics["champion"]["version"]
    assert metrics["champion"]["comparable"] and metrics["champion"]["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert metrics["champion_test_accuracy"] == metrics["champion"]["test_accuracy"]
    assert accuracy != stored  # another test split: the stored number is not what was compared
    assert _scored_independently(champion_model, small_dataset)[0] == pytest.approx(stored, abs=1e-9)
    ours, our_recall = _scored_independently(challenger, slice_b)
    assert metrics["test_accuracy"] == pytest.approx(ours, abs=1e-9)
    # Blessing: the threshold, then the champion's accuracy on the same split minus the tolerance
    assert metrics["blessed"] == (ours >= 0.3 and ours >= accuracy - 0.002)
    assert f"champion {version}'s {accuracy:.4f} on this run's test split" in metrics["reason"]
    # Per class, both models on the same split; the classes where the new model is worse
    rows = metrics["class_comparison"]
    assert [r["class"] for r in rows] == metrics["class_names"] == [str(d) for d in range(10)]
    assert [r["champion_accuracy"] for r in rows] == pytest.approx(recall, abs=1e-9)
    assert [r["accuracy"] for r in rows] == pytest.approx(our_recall, abs=1e-9)
    worse = [str(c) for c in range(10) if our_recall[c] < recall[c]]
    assert metrics["worse_classes"] == worse
    assert f"champion {version} on this test split: accuracy {accuracy:.4f}" in result.stdout
    # The report shows both, per class, and names the worse classes
    page = _Tables()
    page.feed((tmp_path / "report.html").read_text())
    table = page.tables["champion-per-class"]
    assert table[0] == ["class", "support", "accuracy", "champion's accuracy", "difference", "F1", "champion's F1", "worse"]
    assert [row[0] for row in table[1:]] == [str(d) for d in range(10)]
    assert [row[3] for row in table[1:]] == [f"{r:.4f}" for r in recall]
    assert [row[0] for row in table[1:] if row[-1] == "worse"] == worse
    summary = dict(page.tables["summary"])
    assert summary["champion"] == version
    assert summary["champion's test accuracy (this split)"] == f"{accuracy:.4f}"
    assert summary["classes where the new model is worse"] == (", ".join(worse) or "none")
    markdown = (tmp_path / "report.md").read_text()
    assert f"## Against champion {version}, on this test split" in markdown
    assert f"| champion's test accuracy (this split) | {accuracy:.4f} |" in markdown


def test_publish_follows_evaluates_decision_and_refuses_a_champion_it_did_not_score(
        champion, challenger, slice_b, small_dataset, tmp_path):
    import shutil

    published = tmp_path / "published"
    shutil.copytree(champion[0], published)
    version = champion[1]
    _, metrics = _evaluate(challenger, slice_b, tmp_path, "--publish-uri", str(published), "--blessing-tolerance", "1")
    assert metrics["blessed"] and metrics["champion_version"] == version
    # Scored against no champion (a stale decision): the champion's numbers are from another test split
    stale = run_cli("-m", "components.publish", "--model", str(challenger), "--publish-uri", str(published),
                    "--metrics-by-hand", "--test-accuracy", str(metrics["test_accuracy"]),
                    "--test-loss", str(metrics["test_loss"]))
    assert stale.stdout.strip().splitlines()[-1] == (f"not published: the champion is {version}, but evaluate compared the model with "
                                    f"no champion; {version}'s numbers are from another test split, so nothing is "
                                    "compared: evaluate the model again")
    assert (published / LATEST).read_text().strip() == version
    out = run_cli("-m", "components.publish", "--model", str(challenger), "--publish-uri", str(published),
                  "--test-metrics", str(tmp_path / "metrics.json")).stdout.strip().splitlines()[-1]
    new = (published / LATEST).read_text().strip()
    assert new != version and out == (f"published {new} to {published}; LATEST moved to it (champion {version} is the "
                                      "one evaluate compared it with on the same test split)")
    manifest = read_champion(str(published))
    assert manifest["compared_with"] == version
    assert manifest["metrics"]["test_set_sha256"] == metrics["test_set_sha256"]


def test_an_incomparable_champion_is_reported_and_replaced_only_with_force(champion, named_rgb, tmp_path):
    import shutil

    published = tmp_path / "published"
    shutil.copytree(champion[0], published)
    version = champion[1]
    model = _train(named_rgb, tmp_path / "model", "--epochs", "3")
    (tmp_path / "plain").mkdir()
    result, metrics = _evaluate(model, named_rgb, tmp_path / "plain", "--publish-uri", str(published))
    why = (f"its classes are [{', '.join(map(str, range(10)))}], this run's are [zero, one, two]; "
           "its input shape is [28, 28, 1], this run's images are [14, 14, 3]")
    assert metrics["champion"]["comparable"] is False and metrics["champion"]["incomparable"] == why
    assert metrics["champion_test_accuracy"] is None and metrics["class_comparison"] == []
    assert not metrics["blessed"]
    assert metrics["reason"] == f"champion {version} is incomparable ({why}): not replaced without force"
    assert f"champion {version}: incomparable ({why})" in result.stdout
    page = _Tables()
    page.feed((tmp_path / "plain" / "report.html").read_text())
    assert dict(page.tables["summary"])["champion incomparable"] == why
    assert [row[0] for row in page.tables["per-class"][1:]] == NAMED  # the classes by name
    assert "champion-per-class" not in page.tables
    assert "true\\pred" in result.stdout and result.stdout.split("true\\pred", 1)[1].split()[:3] == NAMED

    (tmp_path / "forced").mkdir()
    _, forced = _evaluate(model, named_rgb, tmp_path / "forced", "--publish-uri", str(published), "--force")
    assert forced["blessed"] and forced["reason"].endswith(f"champion {version} is incomparable ({why}): replaced, "
                                                           "force is set")
    assert forced["champion_version"] == version
    run_cli("-m", "components.publish", "--model", str(model), "--publish-uri", str(published),
            "--test-metrics", str(tmp_path / "forced" / "metrics.json"))
    replaced = read_champion(str(published))
    assert replaced["version"] != version and replaced["compared_with"] == version
    assert replaced["dataset"]["class_names"] == NAMED and replaced["dataset"]["image_shape"] == [14, 14, 3]
    # The served model follows the data: 14x14x3 in, three probabilities out
    from mlp_core.data.tf import tf

    serve = tf.saved_model.load(str(published / replaced["version"] / "saved_model" / "1")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].shape.as_list() == [None, 14, 14, 3]
    images, _ = read_split(named_rgb, "test")
    out = serve(images=tf.constant(images[:5]))
    assert out["probabilities"].shape == (5, 3)
    assert np.asarray(out["classes"]).max() < 3


def test_a_trained_models_saved_model_answers_class_names(named_rgb, tmp_path):
    from mlp_core.data.tf import tf

    model = _train(named_rgb, tmp_path / "model", "--epochs", "1")
    serve = tf.saved_model.load(str(model / "saved_model" / "1")).signatures["serving_default"]
    images, _ = read_split(named_rgb, "test")
    out = serve(images=tf.constant(images[:8]))
    assert [NAMED[c] for c in out["classes"].numpy()] == [n.decode() for n in out["class_names"].numpy()]


def test_export_names_the_classes_and_follows_the_image_shape(tmp_path):
    """The SavedModel's signature from the dataset's shape and classes: class_names beside probabilities and classes."""
    from mlp_core.data.tf import tf
    from mlp_core.export import export_saved_model

    rng = np.random.default_rng(0)
    params = [(rng.normal(size=(16, 14 * 14 * 3)).astype(np.float32), np.zeros(16, np.float32)),
              (rng.normal(size=(3, 16)).astype(np.float32), np.zeros(3, np.float32))]
    export_saved_model(params, [14, 14, 3], tmp_path / "1", NAMED)
    serve = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    images = rng.integers(0, 256, (32, 14, 14, 3)).astype(np.uint8)
    out = serve(images=tf.constant(images))
    assert [NAMED[c] for c in out["classes"].numpy()] == [n.decode() for n in out["class_names"].numpy()]
    np.testing.assert_array_equal(out["classes"].numpy(), out["probabilities"].numpy().argmax(axis=1))
    export_saved_model(params, [14, 14, 3], tmp_path / "unnamed")  # without names: the outputs as before
    unnamed = tf.saved_model.load(str(tmp_path / "unnamed")).signatures["serving_default"](images=tf.constant(images))
    assert set(unnamed) == {"probabilities", "classes"}
    np.testing.assert_array_equal(unnamed["classes"].numpy(), out["classes"].numpy())
    with pytest.raises(ValueError, match="2 class names for a model of 3 classes"):
        export_saved_model(params, [14, 14, 3], tmp_path / "2", NAMED[:2])
    with pytest.raises(ValueError, match=r"images of shape \[28, 28, 1\] do not fit a model of 588 inputs"):
        export_saved_model(params, [28, 28, 1], tmp_path / "3", NAMED)


def test_a_champion_on_cloud_storage_is_downloaded_and_scored(champion, challenger, slice_b, gcs_emulator, tmp_path):
    gcs_emulator.create_bucket("champions")
    uri = "gs://champions/mnist-mlp"
    _, version, model = champion
    first = publish_model(model, uri, 0.9)
    _, metrics = _evaluate(challenger, slice_b, tmp_path, "--publish-uri", uri)
    accuracy, _ = _scored_independently(model, slice_b)
    assert metrics["champion_version"] == first.version
    assert metrics["champion"]["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)


REGISTRY = "projects/my-project/locations/us-central1/models/mnist-mlp"


def test_a_model_registry_champion_is_scored_from_its_model_uri(champion, challenger, slice_b, gcs_emulator, tmp_path):
    from vertex_api_stand_in import VertexModelRegistryStandIn

    _, _, model = champion
    gcs_emulator.create_bucket("registry-champion")
    model_uri = "gs://registry-champion/run-1/train/model"
    upload_tree(model, model_uri)
    with VertexModelRegistryStandIn() as vertex:
        env = {"JAX_MLP_VERTEX_ENDPOINT": vertex.url}
        import os
        from unittest import mock

        with mock.patch.dict(os.environ, env):
            first = publish_model(model, REGISTRY, 0.9, model_uri=model_uri)
            assert first.promoted
            _, metrics = _evaluate(challenger, slice_b, tmp_path, "--publish-uri", REGISTRY)
            accuracy, _ = _scored_independently(model, slice_b)
            assert metrics["champion_version"] == first.version == "1"
            assert metrics["champion"]["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
            stale = publish_model(challenger, REGISTRY, metrics["test_accuracy"], model_uri=model_uri)
            assert not stale.promoted and "evaluate compared the model with no champion" in stale.reason
