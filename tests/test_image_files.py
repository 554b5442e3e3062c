"""What predict reads (mlp_core.data.image_files): folders walked, files judged by name or header, shapes checked
before TensorFlow is imported, images converted with --resize exactly as the image-folder ingest converts them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from mlp_core.errors import UserError
from mlp_core.data.image_files import check_shapes, decode, find_inputs


def _png(path, array, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def _pixels(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_a_folder_is_walked_recursively_in_sorted_order_other_files_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("photos/b.png", "photos/a/z.JPG", "photos/a/deeper/y.jpeg", "photos/a-b.png", "photos/c/x.png"):
        _png(tmp_path / name, _pixels(len(name), (14, 14, 3)))
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    (tmp_path / "photos" / "c" / "batch.npy").write_bytes(b"")  # a .npy in a folder is not walked into
    (tmp_path / "photos" / "empty").mkdir()
    _png(tmp_path / "one.png", _pixels(0, (14, 14, 3)))
    inputs, notes = find_inputs(["photos/", "one.png", "photos/c"])
    assert [i.shown for i in inputs] == [  # each path as given, a folder's images joined to the folder argument
        "photos/a/deeper/y.jpeg", "photos/a/z.JPG", "photos/a-b.png", "photos/b.png", "photos/c/x.png",
        "one.png", "photos/c/x.png"]
    assert all(i.kind == "image" and i.shape == (14, 14, 3) for i in inputs)
    assert notes == ["photos/: skipped 2 file(s) not named .jpg, .jpeg, .png",
                     "photos/c: skipped 1 file(s) not named .jpg, .jpeg, .png"]
    absolute = find_inputs([str(tmp_path / "photos" / "a")])[0]
    assert [i.shown for i in absolute] == [str(tmp_path / "photos" / "a" / "deeper" / "y.jpeg"),
                                           str(tmp_path / "photos" / "a" / "z.JPG")]


@pytest.mark.parametrize(("setup", "argument", "message"), [
    (lambda p: (p / "empty").mkdir(), "empty", "empty: no images (.jpg, .jpeg, .png) in this folder or below it"),
    (lambda p: (p / "texts" / "sub").mkdir(parents=True) or (p / "texts" / "sub" / "a.txt").write_text("x"),
     "texts", "texts: no images (.jpg, .jpeg, .png) in this folder or below it"),
    (lambda p: None, "missing.png", "input not found: missing.png"),
    (lambda p: (p / "notes.txt").write_text("hello"), "notes.txt",
     "notes.txt: inputs are PNG or JPEG images (.jpg, .jpeg, .png), folders of them, or .npy batches"),
    (lambda p: (p / "fake.png").write_text("hello"), "fake.png", "fake.png: not a valid PNG/JPEG (its first bytes"),
    (lambda p: Image.new("RGB", (4, 4)).save(p / "gif.png", format="GIF"), "gif.png", "gif.png: not a valid PNG/JPEG"),
    (lambda p: (p / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00"), "cut.png",
     "cut.png: not a valid PNG (the file ends inside its header, after 9 bytes)"),
    (lambda p: (p / "in").mkdir() or os.mkfifo(p / "in" / "zz-fifo.png"), "in",
     "in/zz-fifo.png is a named pipe (FIFO), not a regular file"),
    (lambda p: (p / "in").mkdir() or os.symlink("/dev/zero", p / "in" / "zero.png"), "in",
     "in/zero.png is a character device, not a regular file"),
])
def test_what_is_not_an_image_is_refused_in_one_line(tmp_path, monkeypatch, setup, argument, message):
    monkeypatch.chdir(tmp_path)
    setup(tmp_path)
    with pytest.raises(UserError) as refused:
        find_inputs([argument])
    assert str(refused.value).startswith(message) and len(str(refused.value).splitlines()) == 1


def test_a_file_without_an_image_name_is_judged_by_its_first_bytes(tmp_path):
    _png(tmp_path / "digit", _pixels(1, (14, 14)), format="PNG")
    _png(tmp_path / "photo.bin", _pixels(2, (9, 7, 3)), format="JPEG")
    np.save(tmp_path / "batch.npy", _pixels(3, (2, 14, 14, 1)))
    os.rename(tmp_path / "batch.npy", tmp_path / "batch")
    inputs, _ = find_inputs([str(tmp_path / name) for name in ("digit", "photo.bin", "batch")])
    assert [(i.kind, i.shape) for i in inputs] == [("image", (14, 14, 1)), ("image", (9, 7, 3)), ("npy", None)]


def test_the_header_channels_are_those_tensorflows_decoder_gives(tmp_path):
    """The table the light phase reads (Pillow's mode) held to what tf.io.decode_image(channels=0) decodes."""
    from mlp_core.data.tf import tf

    grey, rgb = _pixels(4, (6, 5)), _pixels(5, (6, 5, 3))
    cases = {
        "L.png": (Image.fromarray(grey), {}), "LA.png": (Image.fromarray(rgb).convert("LA"), {}),
        "RGB.png": (Image.fromarray(rgb), {}), "RGBA.png": (Image.fromarray(rgb).convert("RGBA"), {}),
        "P.png": (Image.fromarray(rgb).convert("P"), {}),
        "P-tRNS.png": (Image.fromarray(rgb).convert("P"), {"transparency": 0}),
        "L-tRNS.png": (Image.fromarray(grey), {"transparency": 7}),
        "RGB-tRNS.png": (Image.fromarray(rgb), {"transparency": (1, 2, 3)}),
        "1.png": (Image.fromarray(grey).convert("1"), {}),
        "I16.png": (Image.fromarray(grey.astype(np.uint16) * 257), {}),
        "L.jpg": (Image.fromarray(grey), {}), "RGB.jpg": (Image.fromarray(rgb), {}),
        "CMYK.jpg": (Image.fromarray(rgb).convert("CMYK"), {}),
    }
    for name, (picture, options) in cases.items():
        picture.save(tmp_path / name, **options)
    inputs, _ = find_inputs([str(tmp_path / name) for name in cases])
    for item in inputs:
        decoded = tf.io.decode_image(item.path.read_bytes(), channels=0, expand_animations=False).shape
        assert item.shape == tuple(decoded), item.shown


def test_shapes_are_checked_before_decoding_and_the_refusal_names_resize(tmp_path):
    _png(tmp_path / "grey.png", _pixels(6, (28, 28)))
    _png(tmp_path / "small.png", _pixels(7, (10, 14, 3)))
    np.save(tmp_path / "mnist.npy", _pixels(8, (2, 28, 28, 1)))
    np.save(tmp_path / "one.npy", _pixels(9, (14, 14, 3)))  # one image, no batch axis
    for name, got in (("grey.png", "[28, 28, 1]"), ("small.png", "[10, 14, 3]")):
        inputs, _ = find_inputs([str(tmp_path / name)])
        with pytest.raises(UserError) as refused:
            check_shapes(inputs, [14, 14, 3], resize=False)
        assert str(refused.value) == (f"{tmp_path / name}: images must be [14, 14, 3], got {got} "
                                      "(give --resize to resize and convert it)")
        check_shapes(inputs, [14, 14, 3], resize=True)
    inputs, _ = find_inputs([str(tmp_path / "mnist.npy")])
    for resize in (False, True):  # a batch is never converted: it is what the caller made it
        with pytest.raises(UserError, match=r"got \[28, 28, 1\] \(--resize converts image files, not .npy batches"):
            check_shapes(inputs, [14, 14, 3], resize=resize)
    inputs, _ = find_inputs([str(tmp_path / "one.npy")])
    check_shapes(inputs, [14, 14, 3], resize=False)
    assert inputs[0].array.shape == (1, 14, 14, 3)
    with pytest.raises(UserError, match=r"--resize converts images to 1, 3 or 4 channels .* takes \[14, 14, 2\]"):
        check_shapes(find_inputs([str(tmp_path / "grey.png")])[0], [14, 14, 2], resize=True)


def test_resize_converts_as_the_image_folder_ingest_does(tmp_path):
    """predict --resize and ingest --resize turn the same files into the same pixels (one decoder, theirs)."""
    from components.ingest import ingest_dataset
    from mlp_core.data.artifact import read_split

    files = {"train/a/1.png": _pixels(10, (28, 28, 3)), "train/b/2.jpg": _pixels(11, (20, 31)),
             "test/a/3.png": _pixels(12, (14, 14, 1))[..., 0], "test/b/4.png": _pixels(13, (40, 9, 4))}
    for name, array in files.items():
        _png(tmp_path / "source" / name, array, **({"quality": 90} if name.endswith(".jpg") else {}))
    ingest_dataset(tmp_path / "ingested", source=str(tmp_path / "source"), image_shape="14x14x1", resize=True,
                   progress=False)
    ingested = [image.tobytes() for split in ("train", "test") for image in read_split(tmp_path / "ingested", split)[0]]
    inputs, _ = find_inputs([str(tmp_path / "source")])
    check_shapes(inputs, [14, 14, 1], resize=True)
    images, names, resized = decode(inputs, [14, 14, 1], resize=True)
    assert images.shape == (4, 14, 14, 1) and images.dtype == np.uint8
    assert names == [str(tmp_path / "source" / n) for n in ("test/a/3.png", "test/b/4.png", "train/a/1.png",
                                                            "train/b/2.jpg")]
    assert resized == 3  # test/a/3.png is already 14x14x1
    assert sorted(image.tobytes() for image in images) == sorted(ingested)
    np.testing.assert_array_equal(images[0, ..., 0], files["test/a/3.png"])  # unconverted: its own pixels


def test_a_name_that_is_not_printable_cannot_fake_an_output_line(tmp_path):
    _png(tmp_path / "x.png: zero (p=0.9000)\nfake.png", _pixels(14, (14, 14, 3)))
    inputs, _ = find_inputs([str(tmp_path)])
    images, names, _ = decode(inputs, [14, 14, 3], resize=False)
    assert names == [f"{tmp_path}/x.png: zero (p=0.9000)\\nfake.png"] and len(images) == 1


_ERROR_PATH = """
import sys
from components.predict import main
code = main(sys.argv[1:])
print(code, sorted(m for m in ("tensorflow", "jax", "keras") if m in sys.modules))
"""


@pytest.mark.parametrize("case", ["no model", "no marker", "missing input", "not an image", "empty folder",
                                  "another shape", "bad server", "bad model name"])
def test_bad_arguments_are_refused_before_tensorflow_or_jax_is_imported(tmp_path, case):
    """The 4-7 s start-up of TensorFlow is not paid to print a validation error (bench: the time; here: the imports)."""
    from artifacts.outputs import commit

    model = tmp_path / "model"
    model.mkdir()
    (model / "dataset.json").write_text(json.dumps({"image_shape": [14, 14, 3], "class_names": ["a", "b", "c"]}))
    commit(model, "model")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "empty").mkdir()
    _png(tmp_path / "big.png", _pixels(15, (28, 28)))
    _png(tmp_path / "ok.png", _pixels(16, (14, 14, 3)))
    (tmp_path / "notes.txt").write_text("x")
    argv, message = {
        "no model": (["--model", "nope", "ok.png"], "model folder does not exist: nope"),
        "no marker": (["--model", "unfinished", "ok.png"], "unfinished is not a complete model artifact"),
        "missing input": (["--model", "model", "gone.png"], "input not found: gone.png"),
        "not an image": (["--model", "model", "notes.txt"], "notes.txt: inputs are PNG or JPEG images"),
        "empty folder": (["--model", "model", "empty"], "empty: no images"),
        "another shape": (["--model", "model", "ok.png", "big.png"],
                          "big.png: images must be [14, 14, 3], got [28, 28, 1] (give --resize"),
        "bad server": (["--server", "ftp://x", "--model-name", "m", "ok.png"], "--server 'ftp://x'"),
        "bad model name": (["--server", "http://localhost:9", "--model-name", "../admin", "ok.png"], "--model-name"),
    }[case]
    result = subprocess.run([sys.executable, "-c", _ERROR_PATH, *argv], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.stdout == "2 []\n", result.stderr[-2000:]
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.splitlines()) == 1, result.stderr
