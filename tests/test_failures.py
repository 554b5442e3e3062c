"""The failure catalogue: each bad input gives one clear line, exit status 2, and no artifact."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from mlp_core.data.records import sha256_file, write_shards
from artifacts.outputs import commit


def _copy(dataset: Path, tmp_path: Path) -> Path:
    out = tmp_path / "dataset"
    shutil.copytree(dataset, out)
    return out


def _meta(dataset: Path) -> dict:
    return json.loads((dataset / "metadata.json").read_text())


def _save_meta(dataset: Path, meta: dict) -> None:
    """Rewrite metadata.json and sign the artifact again, so the damage reaches the checks behind the marker."""
    (dataset / "metadata.json").write_text(json.dumps(meta))
    commit(dataset, "dataset")


def _refresh_shard(dataset: Path, name: str) -> None:
    """Make metadata.json agree with a rewritten shard, so only the record-level check can object."""
    meta = _meta(dataset)
    for split in meta["splits"].values():
        for shard in split["shards"]:
            if shard["name"] == name:
                shard["num_bytes"] = (dataset / name).stat().st_size
                shard["sha256"] = sha256_file(dataset / name)
    _save_meta(dataset, meta)


def _train(dataset, out: Path, *extra: str):
    return run_cli("-m", "components.train", "--dataset", str(dataset), "--model", str(out / "model"),
                   "--metrics", str(out / "metrics.json"), "--epochs", "1", *extra, check=False)


def _assert_refused(result, message: str, out: Path | None = None) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: "), lines[-3:]
    assert message in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr
    if out is not None:
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert left == [], f"left behind: {left}"


# 1, 2: tfds inputs
def test_unknown_tfds_dataset_names_close_ones(tmp_path, mnist_data_dir):
    r = run_cli("-m", "components.ingest", "--dataset-name", "mnsit", "--tfds-data-dir", mnist_data_dir,
                "--output", str(tmp_path / "out" / "ds"), check=False)
    _assert_refused(r, "unknown tfds dataset 'mnsit'; did you mean mnist", tmp_path / "out")


def test_missing_tfds_data_dir(tmp_path):
    r = run_cli("-m", "components.ingest", "--tfds-data-dir", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out" / "ds"), check=False)
    _assert_refused(r, f"--tfds-data-dir {tmp_path / 'nowhere'} does not exist", tmp_path / "out")


def test_tfds_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    r = run_cli("-m", "components.ingest", "--tfds-data-dir", str(tmp_path / "file"), "--output", str(tmp_path / "out" / "ds"), check=False)
    _assert_refused(r, "TFDS data dir is a file", tmp_path / "out")


# 3-6: shards
def test_truncated_shard(small_dataset, tmp_path):
    ds = _copy(small_dataset, tmp_path)
    shard = ds / "train-00001-of-00003.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])
    _assert_refused(_train(ds, tmp_path / "out"), "train-00001-of-00003.tfrecord has", tmp_path / "out")
    _refresh_shard(ds, shard.name)  # even with metadata agreeing, the framing is broken
    _assert_refused(_train(ds, tmp_path / "out"), "train-00001-of-00003.tfrecord: truncated: record 199", tmp_path / "out")


def test_a_huge_length_field_is_refused_before_tf_data_streams_it(small_dataset, tmp_path):
    """--placement stream hands shards to TensorFlow's reader, which a length field of 2**60 crashes (a segfault)."""
    ds = _copy(small_dataset, tmp_path)
    shard = ds / "train-00001-of-00003.tfrecord"
    raw = bytearray(shard.read_bytes())
    raw[:8] = (1 << 60).to_bytes(8, "little")
    shard.write_bytes(raw)
    _refresh_shard(ds, shard.name)  # the metadata agrees: only the record-level check can object
    _assert_refused(_train(ds, tmp_path / "out", "--placement", "stream"), "train-00001-of-00003.tfrecord: ",
                    tmp_path / "out")


def _recommit(ds: Path) -> None:
    from artifacts.outputs import COMPLETE, commit

    (ds / COMPLETE).unlink()
    commit(ds, "dataset")


def test_flipped_byte_fails_its_crc(small_dataset, tmp_path):
    ds = _copy(small_dataset, tmp_path)
    shard = ds / "train-00000-of-00003.tfrecord"
    raw = bytearray(shard.read_bytes())
    frame = int.from_bytes(raw[:8], "little") + 16
    raw[5 * frame + 12 + 300] ^= 0x10
    shard.write_bytes(raw)
    _recommit(ds)  # a marker rewritten over the damage (its sha256 would catch it first): the record's CRC still does
    _assert_refused(_train(ds, tmp_path / "out"), "train-00000-of-00003.tfrecord: corrupted record 5 (CRC mismatch)", tmp_path / "out")


def test_sha256_mismatch(small_dataset, tmp_path):
    ds = _copy(small_dataset, tmp_path)
    meta = _meta(ds)
    meta["splits"]["train"]["shards"][2]["sha256"] = "0" * 64
    _save_meta(ds, meta)
    _assert_refused(_train(ds, tmp_path / "out"), "shard train-00002-of-00003.tfrecord has sha256", tmp_path / "out")


def test_missing_and_extra_shards(small_dataset, tmp_path):
    ds = _copy(small_dataset, tmp_path)
    (ds / "train-00001-of-00003.tfrecord").rename(tmp_path / "aside.tfrecord")
    _assert_refused(_train(ds, tmp_path / "out"), "not a complete dataset artifact: train-00001-of-00003.tfrecord is missing")
    (tmp_path / "aside.tfrecord").rename(ds / "train-00001-of-00003.tfrecord")
    shutil.copy(ds / "train-00000-of-00003.tfrecord", ds / "train-00003-of-00003.tfrecord")
    _assert_refused(_train(ds, tmp_path / "out"), "shard train-00003-of-00003.tfrecord", tmp_path / "out")


# 7-9: records
def _rewrite_train(ds: Path, examples: list) -> None:
    for p in ds.glob("train-*.tfrecord"):
        p.unlink()
    shards = write_shards(ds, "train", iter(examples), len(examples), 1000)
    meta = _meta(ds)
    counts = [len(examples)] + [0] * (meta["num_classes"] - 1)  # consistent enough to pass metadata.json's own checks
    meta["splits"]["train"].update(num_examples=len(examples), class_counts=counts, shards=[s.to_dict() for s in shards])
    _save_meta(ds, meta)


def test_images_of_the_wrong_shape(small_dataset, tmp_path):
    ds = _copy(small_dataset, tmp_path)
    rng = np.random.default_rng(0)
    _rewrite_train(ds, [(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), i % 10) for i in range(300)])
    _assert_refused(_train(ds, tmp_path / "out"), "an image holds 2352 bytes, the metadata's uint8 image_shape needs 784", tmp_path / "out")


def test_images_of_the_wrong_dtype(small_dataset, tmp_path):
    ds = _copy(small_dataset, tmp_path)
    meta = _meta(ds)
    meta["image_dtype"] = "float32"
    _save_meta(ds, meta)
    _assert_refused(_train(ds, tmp_path / "out"), "images must be uint8, metadata says 'float32'", tmp_path / "out")


def test_label_outside_the_classes(small_dataset, tmp_path):
    ds = _copy(small_dataset, tmp_path)
    rng = np.random.default_rng(0)
    _rewrite_train(ds, [(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8), 12 if i == 7 else i % 10) for i in range(300)])
    _assert_refused(_train(ds, tmp_path / "out"), "train holds label 12, outside the 10 classes 0..9", tmp_path / "out")


def test_empty_split(small_dataset, tmp_path, mnist_data_dir):
    r = run_cli("-m", "components.ingest", "--tfds-data-dir", mnist_data_dir, "--train-split", "train[:0]",
                "--output", str(tmp_path / "out" / "ds"), check=False)
    _assert_refused(r, "split 'train[:0]' of mnist is empty", tmp_path / "out")
    ds = _copy(small_dataset, tmp_path)
    _rewrite_train(ds, [])
    _assert_refused(_train(ds, tmp_path / "out2"), "empty", tmp_path / "out2")


# 10, 13: models
@pytest.fixture(scope="module")
def trained(small_model):
    return small_model / "model"  # one epoch on small_dataset (conftest)


def _evaluate(model, dataset, out: Path):
    return run_cli("-m", "components.evaluate", "--model", str(model), "--dataset", str(dataset),
                   "--metrics", str(out / "metrics.json"), check=False)


def test_model_with_another_architecture(trained, small_dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    config = json.loads((model / "config.json").read_text())
    config["layer_sizes"] = [784, 256, 10]
    (model / "config.json").write_text(json.dumps(config))
    commit(model, "model")  # signed again: the architecture check behind the marker must catch it
    _assert_refused(_evaluate(model, small_dataset, tmp_path / "out"), "holds a 784-512-512-10 network, the config says 784-256-10", tmp_path / "out")


def test_model_missing_a_file(trained, small_dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained, model)
    (model / "params.npz").unlink()
    _assert_refused(_evaluate(model, small_dataset, tmp_path / "out"), "not a complete model artifact: params.npz is missing", tmp_path / "out")


def test_evaluate_on_another_dataset(trained, small_dataset, tmp_path):
    ds = _copy(small_dataset, tmp_path)
    meta = _meta(ds)
    meta["dataset"]["name"] = "fashion_mnist"
    _save_meta(ds, meta)
    _assert_refused(_evaluate(trained, ds, tmp_path / "out"), "the dataset is fashion_mnist, the model was trained on mnist", tmp_path / "out")


# 11: hyperparameters
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
        (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
        (["--step-size", "nan"], "--step-size must be a finite number > 0, got nan"),
        (["--step-size", "inf"], "--step-size must be a finite number > 0, got inf"),
        (["--step-size", "-0.5"], "--step-size must be a finite number > 0, got -0.5"),
        (["--hidden-sizes", "512,0"], "--hidden-sizes must be positive integers separated by commas, got '512,0'"),
        (["--hidden-sizes", "512,x"], "--hidden-sizes must be positive integers separated by commas"),
        (["--batch-size", "100000"], "--batch-size 100000 is larger than the training split (512 examples)"),
    ],
)
def test_invalid_hyperparameters(small_dataset, tmp_path, flags, message):
    _assert_refused(_train(small_dataset, tmp_path / "out", *flags), message, tmp_path / "out")


# 12: divergence
def test_divergence_names_epoch_and_step_and_publishes_nothing(small_dataset, tmp_path):
    r = _train(small_dataset, tmp_path / "out", "--step-size", "1e6", "--no-shuffle")
    _assert_refused(r, "training diverged: non-finite loss at epoch 1, step", tmp_path / "out")
    assert "try a smaller step size (now 1000000.0)" in r.stderr


# 14, 15: paths
def test_file_where_a_folder_is_expected_and_the_reverse(small_dataset, tmp_path):
    (tmp_path / "a_file").write_text("x")
    r = run_cli("-m", "components.train", "--dataset", str(tmp_path / "a_file"), "--model", str(tmp_path / "m"), check=False)
    _assert_refused(r, "dataset path is a file, expected a folder")
    r = run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(tmp_path / "a_file"), check=False)
    _assert_refused(r, "output path is a file, expected a folder")
    (tmp_path / "a_dir").mkdir()
    r = run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(tmp_path / "m"),
                "--metrics", str(tmp_path / "a_dir"), check=False)
    _assert_refused(r, "output path is a folder, expected a file")
    assert not (tmp_path / "m").exists()


def test_output_location_not_writable(small_dataset, tmp_path):
    # /proc refuses new files even to root (CI runs as root, so chmod would prove nothing).
    r = run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", "/proc/jax-mlp/model", check=False)
    _assert_refused(r, "output location is not writable: /proc/jax-mlp")


def test_the_dag_stops_at_a_corrupt_tfds_shard(mnist_data_dir, tmp_path):
    """kfp.local with a byte flipped in tfds's own train shard: ingest fails clearly, evaluate never runs."""
    data_dir = tmp_path / "tfds"
    shutil.copytree(Path(mnist_data_dir) / "mnist", data_dir / "mnist")
    shard = sorted((data_dir / "mnist").glob("*/mnist-train.tfrecord-*"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    shard.write_bytes(raw)
    r = run_cli("pipeline.py", "run", "--epochs", "1", "--tfds-data-dir", str(data_dir),
                "--pipeline-root", str(tmp_path / "outputs"), check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("ingest failed: UserError: cannot read mnist train")  # the step's error, one line
    assert r.stderr.strip().splitlines()[-1].startswith("error: Pipeline 'jax-mlp-pipeline' finished with status FAILURE")
    assert "Traceback" not in r.stdout + r.stderr
    log = next((tmp_path / "outputs").glob("*/pipeline.log")).read_text()  # everything kfp.local printed
    assert "Executing task 'ingest'" in log and "Traceback" in log
    assert "Executing task 'train'" not in log and "Executing task 'evaluate'" not in log


def test_a_step_that_requested_a_gpu_refuses_to_train_on_the_cpu(small_dataset, tmp_path):
    """A CPU image on a GPU node (JAX falls back to the CPU silently): the step fails before any work."""
    r = _train(small_dataset, tmp_path / "out", "--require-gpu")
    _assert_refused(r, "this step requested a GPU but JAX sees only cpu: the image is the CPU variant", tmp_path / "out")
