"""Your own images: real MNIST exported as PNG/JPEG folders in tfds ImageFolder's layout, in spans and dated
folders, on a local folder, the GCS emulator and an S3 server, ingested into the Dataset artifact train and
evaluate read."""

import datetime
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from components import ingest as ingest_cli
from conftest import run_cli, run_main
from image_folders import mnist_slice, upload, write_images, write_split_folder
from mlp_core.data.artifact import load_metadata, read_split
from mlp_core.errors import UserError

SPAN_1 = ("train[:200]", "test[:100]")
SPAN_2 = ("train[200:400]", "test[100:200]")


@pytest.fixture(scope="session")
def mnist_folders(mnist_data_dir, tmp_path_factory):
    """``spans/span-1``, ``spans/span-2`` and the same two as ``dated/2026-11-29``, ``dated/2026-11-30`` (PNG), from
    real MNIST; returns the base folder and each span's ``(images, labels)`` per split."""
    base = tmp_path_factory.mktemp("image_folders")
    data = {}
    for number, (train, test) in enumerate((SPAN_1, SPAN_2), 1):
        data[number] = {"train": mnist_slice(mnist_data_dir, train), "test": mnist_slice(mnist_data_dir, test)}
        assert len(set(data[number]["test"][1])) == 10  # every class in each split, as ingest requires
        write_split_folder(base / "spans" / f"span-{number}", data[number]["train"], data[number]["test"])
        shutil.copytree(base / "spans" / f"span-{number}", base / "dated" / f"2026-11-{28 + number}")
    return base, data


def _ingest(output, source, **params):
    from components.ingest import ingest_dataset

    return ingest_dataset(output, progress=False, source=str(source), **params)


def _pairs(images, labels) -> list:
    """An order-free view of a split: sorted (label, pixel bytes)."""
    return sorted((int(label), image.tobytes()) for image, label in zip(images, labels))


def _refused(capsys, argv, message) -> str:
    """The ingest CLI (in this process) exits 2 with one line holding ``message``; returns that line."""
    assert ingest_cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    return err[0]


def test_a_folder_becomes_the_dataset_train_and_evaluate_read(mnist_folders, tmp_path):
    base, data = mnist_folders
    metadata = _ingest(tmp_path / "ds", base / "spans" / "span-1", records_per_shard=128)
    assert metadata["class_names"] == [str(d) for d in range(10)] and metadata["image_shape"] == [28, 28, 1]
    assert load_metadata(tmp_path / "ds") == {"format_version": 1, **metadata}  # the schema accepts it
    for split in ("train", "test"):
        images, labels = read_split(tmp_path / "ds", split)
        assert _pairs(images, labels) == _pairs(*data[1][split])  # MNIST's own pixels and labels, every image
        assert metadata["splits"][split]["class_counts"] == np.bincount(data[1][split][1], minlength=10).tolist()
    # Classes are mixed within the shards (tfds's fixed shuffle per split), not one class after another.
    _, labels = read_split(tmp_path / "ds", "train")
    assert len(set(labels[:20].tolist())) > 5
    assert len(metadata["splits"]["train"]["shards"]) == 2  # 200 images, 128 per shard
    source = metadata["source"]
    assert source["spans"] == [] and len(source["files"]) == 300
    first = source["files"][0]
    assert first["sha256"] == hashlib.sha256((base / "spans" / "span-1" / first["name"]).read_bytes()).hexdigest()


def test_the_newest_span_or_a_window_of_them(mnist_folders, tmp_path):
    base, data = mnist_folders
    newest = _ingest(tmp_path / "newest", base / "spans" / "span-{SPAN}")
    assert [s["span"] for s in newest["source"]["spans"]] == [2]
    assert _pairs(*read_split(tmp_path / "newest", "train")) == _pairs(*data[2]["train"])
    assert all(f["name"].startswith("span-2/") for f in newest["source"]["files"])
    window = _ingest(tmp_path / "window", base / "spans" / "span-{SPAN}", span_window=2)
    assert [s["span"] for s in window["source"]["spans"]] == [1, 2]
    assert window["splits"]["train"]["num_examples"] == 400 and window["splits"]["test"]["num_examples"] == 200
    both = [np.concatenate([data[1]["test"][i], data[2]["test"][i]]) for i in (0, 1)]
    assert _pairs(*read_split(tmp_path / "window", "test")) == _pairs(*both)
    wider = _ingest(tmp_path / "wider", base / "spans" / "span-{SPAN}", span_window=5)  # the spans there are
    assert wider["source"]["fingerprint"] == window["source"]["fingerprint"]
    assert newest["source"]["fingerprint"] != window["source"]["fingerprint"]


def test_dated_folders_resolve_to_the_newest_date(mnist_folders, tmp_path):
    base, data = mnist_folders
    metadata = _ingest(tmp_path / "ds", base / "dated" / "{YYYY}-{MM}-{DD}")
    (span,) = metadata["source"]["spans"]
    assert span["name"] == "2026-11-30" and span["span"] == (datetime.date(2026, 11, 30) - datetime.date(1970, 1, 1)).days
    assert _pairs(*read_split(tmp_path / "ds", "train")) == _pairs(*data[2]["train"])


def test_the_fingerprint_changes_iff_the_files_do(mnist_folders, tmp_path):
    base, _ = mnist_folders
    folder = tmp_path / "images"
    shutil.copytree(base / "spans" / "span-1", folder)

    def fingerprint(name):
        return _ingest(tmp_path / name, folder)["source"]["fingerprint"]

    first = fingerprint("a")
    assert fingerprint("b") == first
    a, b = load_metadata(tmp_path / "a"), load_metadata(tmp_path / "b")
    assert a["splits"] == b["splits"]  # byte-identical shards from the same files
    some = sorted(folder.glob("train/3/*.png"))[0]
    os.utime(some, (0, 0))  # a new mtime, the same bytes: TFX's mtime fingerprint would change here
    assert fingerprint("touched") == first
    from PIL import Image

    pixels = np.asarray(Image.open(some)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(some)
    changed = fingerprint("changed")
    assert changed != first
    shutil.copy(some, some.with_name("extra.png"))
    assert fingerprint("added") not in (first, changed)
    some.with_name("extra.png").unlink()
    assert fingerprint("removed") == changed


def test_gcs_s3_and_minio_sources_read_the_same_files_as_a_local_folder(mnist_folders, gcs_emulator, s3_server, tmp_path):
    base, _ = mnist_folders
    local = _ingest(tmp_path / "local", base / "spans" / "span-{SPAN}", span_window=2)
    if not gcs_emulator.bucket("image-folders").exists():
        gcs_emulator.create_bucket("image-folders")
    upload(base / "spans", "gs://image-folders/mnist")
    upload(base / "spans", "s3://mlpipeline/images/mnist")
    for name, uri in (("gcs", "gs://image-folders/mnist/span-{SPAN}"), ("s3", "s3://mlpipeline/images/mnist/span-{SPAN}"),
                      ("minio", "minio://mlpipeline/images/mnist/span-{SPAN}")):  # Kubeflow's bundled store: S3
        remote = _ingest(tmp_path / name, uri, span_window=2)
        assert remote["source"]["fingerprint"] == local["source"]["fingerprint"], name
        assert remote["splits"] == local["splits"], name  # the same shards, byte for byte
        assert [s["location"] for s in remote["source"]["spans"]] == [uri.replace("{SPAN}", "1"), uri.replace("{SPAN}", "2")]


def test_an_empty_class_folder_in_a_bucket_is_refused(mnist_folders, gcs_emulator, capsys, tmp_path):
    _, data = mnist_folders
    if not gcs_emulator.bucket("image-folders").exists():
        gcs_emulator.create_bucket("image-folders")
    few = [(images[:8], labels[:8]) for images, labels in (data[1]["train"], data[1]["test"])]
    upload(write_split_folder(tmp_path / "few", *few), "gs://image-folders/empty-class")
    gcs_emulator.bucket("image-folders").blob("empty-class/train/cat/").upload_from_string(b"")  # the console's "folder"
    _refused(capsys, ["--output", str(tmp_path / "ds"), "--source", "gs://image-folders/empty-class"],
             "class folder gs://image-folders/empty-class/train/cat holds no image")
    assert not (tmp_path / "ds").exists()


def test_jpeg_and_rgb_images(mnist_folders, tmp_path):
    _, data = mnist_folders
    train, test = data[1]["train"], data[1]["test"]
    write_split_folder(tmp_path / "jpeg", train, test, fmt="jpg")
    metadata = _ingest(tmp_path / "jpeg-ds", tmp_path / "jpeg")
    assert metadata["image_shape"] == [28, 28, 1]
    images, labels = read_split(tmp_path / "jpeg-ds", "train")
    assert sorted(labels.tolist()) == sorted(train[1].tolist())
    for digit in range(10):  # JPEG is lossy: each class's mean image within a grey level or two of MNIST's
        ours, theirs = images[labels == digit].mean(0), train[0][train[1] == digit].mean(0)
        assert np.abs(ours - theirs).mean() < 2.0, digit
    write_split_folder(tmp_path / "rgb", train, test, mode="RGB")
    rgb = _ingest(tmp_path / "rgb-ds", tmp_path / "rgb")
    assert rgb["image_shape"] == [28, 28, 3]
    images, labels = read_split(tmp_path / "rgb-ds", "train")
    assert (images == images[..., :1]).all()  # grey written as RGB: three equal channels
    assert _pairs(images[..., :1], labels) == _pairs(*train)
    # --resize with a declared grey shape converts RGB back to grey (TensorFlow's decoder does the conversion).
    grey = _ingest(tmp_path / "grey-ds", tmp_path / "rgb", image_shape="28x28x1", resize=True)
    assert grey["image_shape"] == [28, 28, 1] and grey["source"]["resized"] == 300
    images, labels = read_split(tmp_path / "grey-ds", "train")
    assert _pairs(images, labels) == _pairs(*train)


def test_an_image_of_another_size_is_refused_or_resized(mnist_folders, capsys, tmp_path):
    _, data = mnist_folders
    folder = write_split_folder(tmp_path / "images", data[1]["train"], data[1]["test"])
    from PIL import Image

    odd = folder / "train" / "5" / "big.png"
    Image.fromarray(np.full((32, 30), 200, np.uint8), "L").save(odd)
    line = _refused(capsys, ["--output", str(tmp_path / "refused"), "--source", str(folder), "--no-progress"],
                    f"image {odd} is 32x30x1, not 28x28x1")
    assert "--resize" in line and not (tmp_path / "refused").exists()
    metadata = _ingest(tmp_path / "resized", folder, resize=True)
    assert metadata["source"]["resized"] == 1 and metadata["splits"]["train"]["num_examples"] == 201
    images, _ = read_split(tmp_path / "resized", "train")
    assert any((image == 200).all() for image in images)  # the odd one, resized to 28x28 (a flat image stays flat)
    small = _ingest(tmp_path / "small", folder, image_shape="14x14x1", resize=True)
    assert small["image_shape"] == [14, 14, 1] and small["source"]["resized"] == 301
    _refused(capsys, ["--output", str(tmp_path / "x"), "--source", str(folder), "--image-shape", "14x14"],
             "is not HEIGHTxWIDTHxCHANNELS")


def test_bad_sources_are_one_line_and_write_nothing(mnist_folders, capsys, tmp_path):
    base, data = mnist_folders
    folder = tmp_path / "images"
    shutil.copytree(base / "spans" / "span-1", folder)
    out = tmp_path / "ds"
    argv = ["--output", str(out), "--source", str(folder), "--no-progress"]

    broken = folder / "test" / "4" / "broken.png"
    broken.write_bytes((folder / "test" / "4").glob("*.png").__next__().read_bytes()[:40])  # a truncated PNG
    _refused(capsys, argv, f"{broken}: not a valid PNG (the file is truncated")
    broken.unlink()
    (folder / "train" / "7" / "notes.png").write_text("not an image")
    _refused(capsys, argv, f"{folder / 'train' / '7' / 'notes.png'}: not a valid PNG/JPEG (its first bytes")
    (folder / "train" / "7" / "notes.png").unlink()
    (folder / "train" / "cat").mkdir()
    (folder / "train" / "cat" / ".DS_Store").write_bytes(b"\0")  # not an image: ignored, as tfds does
    _refused(capsys, argv, f"class folder {folder / 'train' / 'cat'} holds no image")
    shutil.rmtree(folder / "train" / "cat")
    shutil.move(folder / "test" / "9", tmp_path / "nine")
    _refused(capsys, argv, "class '9' has images in train/ but none in test/")
    shutil.move(tmp_path / "nine", folder / "test" / "9")
    (folder / "train" / "loose.png").write_bytes(b"")
    _refused(capsys, argv, "is directly in the split folder")
    (folder / "train" / "loose.png").unlink()
    _refused(capsys, ["--output", str(out), "--source", str(tmp_path / "nowhere")], "does not exist")
    _refused(capsys, ["--output", str(out), "--source", str(base / "spans" / "week-{SPAN}")], "matches")
    _refused(capsys, ["--output", str(out), "--source", str(base / "spans" / "span-{SPAN}-{VERSION}")], "not supported")
    _refused(capsys, ["--output", str(out), "--source", str(base / "{SPAN}" / "{YYYY}-{MM}-{DD}")], "one or the other")
    _refused(capsys, ["--output", str(out), "--source", "gcs://bucket/images"], "is not a location")
    _refused(capsys, ["--output", str(out), "--source", str(folder), "--train-split", "train[:10]"], "no tfds slicing")
    _refused(capsys, ["--output", str(out), "--span-window", "2"], "apply to an image folder --source")
    _refused(capsys, ["--output", str(folder / "ds"), "--source", str(folder)], "lies inside the input --source")
    assert not out.exists() and not (folder / "ds").exists()
    assert _ingest(out, folder)["splits"]["train"]["num_examples"] == 200  # the folder as it was: fine


def test_span_resolution_rules():
    from mlp_core.data.spans import fingerprint, resolve, split_pattern

    def join(base, name):
        return f"{base}/{name}"

    names = ["span-1/train/0/a.png", "span-10/train/0/a.png", "span-2/x", "span-new/train/0/a.png", "other/span-3/a"]
    assert [s.number for s in resolve("/d/span-{SPAN}", names, 2, join)] == [2, 10]  # by number, not by name
    assert resolve("/d/span-{SPAN}", names, 1, join)[0].location == "/d/span-10"
    with pytest.raises(UserError, match="'span-1' and 'span-01' are both span 1"):
        resolve("/d/span-{SPAN}", ["span-1/a", "span-01/a"], 1, join)
    with pytest.raises(UserError, match="is no date"):
        resolve("/d/{YYYY}{MM}{DD}", ["20260230/a"], 1, join)
    assert resolve("gs://b/x/{YYYY}/{MM}/{DD}", ["2026/11/30/t/a", "2026/12/01/t/a"], 1, join)[0].name == "2026/12/01"
    assert split_pattern("gs://b/x/{YYYY}/{MM}/{DD}") == ("gs://b/x", "{YYYY}/{MM}/{DD}")
    with pytest.raises(UserError, match="bucket"):
        split_pattern("gs://b-{SPAN}/x")
    with pytest.raises(UserError, match="at least 1"):
        resolve("/d/span-{SPAN}", names, 0, join)
    records = [{"name": "b", "size": 1, "sha256": "0" * 64}, {"name": "a", "size": 2, "sha256": "1" * 64}]
    assert fingerprint(records) == fingerprint(records[::-1])  # over the records sorted by name


def test_train_and_evaluate_on_an_ingested_image_folder(mnist_folders, tmp_path):
    base, _ = mnist_folders
    out = run_cli("-m", "components.ingest", "--output", str(tmp_path / "dataset"), "--source",
                  str(base / "spans" / "span-{SPAN}"), "--span-window", "2", "--no-progress").stdout
    assert f"read span-1, span-2 of {base / 'spans' / 'span-{SPAN}'}: 600 images 28x28x1, 10 classes" in out
    assert "train: 400 examples in 1 shard(s)" in out and "test: 200 examples" in out
    run_main("-m", "components.train", "--dataset", str(tmp_path / "dataset"), "--model", str(tmp_path / "model"),
             "--epochs", "1", "--batch-size", "16")  # in process: the CLIs' own runs are test_components' story
    evaluated = run_main("-m", "components.evaluate", "--model", str(tmp_path / "model"), "--dataset",
                        str(tmp_path / "dataset"), "--metrics", str(tmp_path / "metrics.json")).stdout
    assert "test accuracy" in evaluated
    import json

    accuracy = json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"]
    assert accuracy > 0.5  # 400 MNIST images, one epoch of 25 steps: far above chance (0.1)
