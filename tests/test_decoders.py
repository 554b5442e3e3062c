"""Generated bad images and batches (mlp_core.data.image_header): every one refused by ingest and by predict in one
line naming the file, in plain words, before any pixel is decoded where the header tells; nothing written."""

import io
import os
import socket
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from components import ingest as ingest_cli
from mlp_core.errors import UserError
from components import predict as predict_cli
from loopback_json_server import LoopbackJsonServer

FRAMEWORK_WORDS = ("{{", "[Op:", "Graph execution", "function_node", "Traceback", "Error:")


def _png_bytes(array, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _jpeg_bytes(picture) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width, height, depth=8, colour=0, data=None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    data = zlib.compress(b"\0" * 4096) if data is None else data  # a 1 MB file declaring 30000x30000: data is small
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _with_sof(jpeg: bytes, height=None, width=None, components=None) -> bytes:
    """``jpeg`` with its frame header's fields replaced."""
    at = next(i for i in range(2, len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
    head = bytearray(jpeg)
    if height is not None:
        head[at + 5:at + 7] = struct.pack(">H", height)
    if width is not None:
        head[at + 7:at + 9] = struct.pack(">H", width)
    if components is not None:
        head[at + 9] = components
    return bytes(head)


GOOD_PNG = _png_bytes(np.random.default_rng(0).integers(0, 256, (14, 14), dtype=np.uint8))
GOOD_JPEG = _jpeg_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 256, (14, 14), dtype=np.uint8)))
CMYK_JPEG = _jpeg_bytes(Image.fromarray(np.random.default_rng(2).integers(0, 256, (14, 14, 3), np.uint8))
                        .convert("CMYK"))
IDAT_AT = GOOD_PNG.index(b"IDAT") - 4


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


# name -> (bytes, the plain words the one line holds); none of them is an image a decoder should be handed
BAD_IMAGES = {
    "zero-byte.png": (b"", "not a valid PNG/JPEG (the file is empty)"),
    "text.png": (b"hello", "not a valid PNG/JPEG (its first bytes"),
    "signature-only.png": (GOOD_PNG[:8], "not a valid PNG (the file ends inside its header"),
    **{f"truncated-{n}.png": (GOOD_PNG[:n], "not a valid PNG (") for n in (12, 20, 32)},
    **{f"truncated-{n}.png": (GOOD_PNG[:n], "not a valid PNG (the file is truncated")
       for n in (33, 40, IDAT_AT + 10, len(GOOD_PNG) - 13, len(GOOD_PNG) - 1)},
    "wrong-ihdr-crc.png": (_flip(GOOD_PNG, 30), "not a valid PNG (its header's checksum (CRC) does not match"),
    "wrong-idat-crc.png": (_flip(GOOD_PNG, IDAT_AT + 8 + struct.unpack(">I", GOOD_PNG[IDAT_AT:IDAT_AT + 4])[0]),
                           "not a valid PNG (chunk IDAT at byte"),
    "garbage-idat.png": (_png(14, 14, data=b"\x00" * 50), "not a valid PNG ("),
    "short-idat.png": (_png(14, 14, data=zlib.compress(b"\0" * 20)), "not a valid PNG ("),
    "0x0.png": (_png(0, 0), "not a valid PNG (it declares 0x0 pixels)"),
    "0x14.png": (_png(0, 14), "not a valid PNG (it declares 0x14 pixels)"),
    "depth-3.png": (_png(14, 14, depth=3), "its header declares an invalid format (bit depth 3, colour type 0)"),
    "colour-5.png": (_png(14, 14, colour=5), "its header declares an invalid format (bit depth 8, colour type 5)"),
    "30000x30000.png": (_png(30000, 30000), "30000x30000 pixels of 1 channel(s) would take 858 MiB decoded"),
    "65535x65535-rgba.png": (_png(65535, 65535, colour=6), "65535x65535 pixels of 4 channel(s)"),
    "4097x4097-rgba.png": (_png(4097, 4097, colour=6), "4097x4097 pixels of 4 channel(s) would take 64 MiB"),
    **{f"truncated-{n}.jpg": (GOOD_JPEG[:n], "not a valid JPEG (") for n in (3, 20, 100, 200)},
    "truncated-data.jpg": (GOOD_JPEG[:len(GOOD_JPEG) - 40], "not a valid JPEG (the file is truncated"),
    "sof-0-rows.jpg": (_with_sof(GOOD_JPEG, height=0), "not a valid JPEG (it declares 14x0 pixels)"),
    "sof-2-components.jpg": (_with_sof(GOOD_JPEG, components=2), "it declares 2 colour components"),
    "30000x30000.jpg": (_with_sof(GOOD_JPEG, height=30000, width=30000), "would take 858 MiB decoded"),
    "no-frame.jpg": (b"\xff\xd8\xff\xda\x00\x02" + b"\0" * 40, "its image data starts before any frame header"),
    "bad-segment.jpg": (b"\xff\xd8\xff\xe0\x00\x01" + b"\0" * 40, "declares a length of 1"),
}
RESIZE_CASES = {  # good files that --resize cannot convert to the model's channels
    "cmyk.jpg": (CMYK_JPEG, 1, "a CMYK JPEG cannot be converted to 1 channel(s) by --resize"),
    "grey-to-rgba.jpg": (GOOD_JPEG, 4, "a JPEG cannot be converted to 4 channel(s) by --resize"),
}


def _one_line(capfd, name, words):
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and len(err[0]) < 300, err
    assert str(name) in err[0] and words in err[0], err
    assert not any(w in err[0] for w in FRAMEWORK_WORDS), err
    return err[0]


def _source(tmp_path, bad_name, data, channels=1):
    """A two-class image folder holding one bad file (sorted last, so that good ones come first)."""
    good = GOOD_PNG if channels == 1 else _png_bytes(np.zeros((14, 14, 3), np.uint8))
    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / "src" / split / label).mkdir(parents=True, exist_ok=True)
            (tmp_path / "src" / split / label / "0.png").write_bytes(good)
    bad = tmp_path / "src" / "train" / "b" / f"zz-{bad_name}"
    bad.write_bytes(data)
    return bad


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_ingest_refuses_a_bad_image_in_plain_words(name, tmp_path, capfd):
    data, words = BAD_IMAGES[name]
    bad = _source(tmp_path, name, data)
    out = tmp_path / "ds"
    assert ingest_cli.main(["--output", str(out), "--source", str(tmp_path / "src"), "--no-progress"]) == 2
    _one_line(capfd, bad, words)
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(RESIZE_CASES))
def test_ingest_resize_names_the_file_it_cannot_convert(name, tmp_path, capfd):
    data, channels, words = RESIZE_CASES[name]
    bad = _source(tmp_path, name, data)
    out = tmp_path / "ds"
    assert ingest_cli.main(["--output", str(out), "--source", str(tmp_path / "src"), "--no-progress", "--resize",
                            "--image-shape", f"14x14x{channels}"]) == 2
    _one_line(capfd, bad, words)
    assert not out.exists()


class _Metadata(LoopbackJsonServer):
    """A served model's metadata only (TF Serving's GetModelMetadataResponse JSON): predict refuses before sending."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = sizes

    def answer(self, method, path, headers, raw):
        if not path.endswith("/metadata"):
            return 500, {"error": "no image should have been sent"}
        shape = {"dim": [{"size": str(s), "name": ""} for s in self.sizes], "unknown_rank": False}
        return 200, {"metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {"images": {"dtype": "DT_UINT8", "tensor_shape": shape}}}}}}}


@pytest.fixture(scope="module")
def grey_server():
    with _Metadata([-1, 14, 14, 1]) as server:
        yield server


@pytest.mark.parametrize("name", sorted(BAD_IMAGES) + sorted(RESIZE_CASES))
def test_predict_refuses_a_bad_image_in_plain_words(name, tmp_path, capfd, grey_server, monkeypatch):
    if name in RESIZE_CASES:
        data, channels, words = RESIZE_CASES[name]
        server = _Metadata([-1, 14, 14, channels]).__enter__()
    else:
        (data, words), server = BAD_IMAGES[name], grey_server
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a-good.png").write_bytes(GOOD_PNG)
    (tmp_path / "in" / name).write_bytes(data)
    try:
        code = predict_cli.main(["--server", server.url, "--model-name", "m", "--resize", "in"])
    finally:
        if server is not grey_server:
            server.__exit__(None, None, None)
    assert code == 2
    _one_line(capfd, f"in/{name}", words)
    assert not any(r["path"].endswith(":predict") for r in server.requests)


def _npy(array=None, header=None, data=b"") -> bytes:
    if header is None:
        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()
    text = repr(header).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


BAD_BATCHES = {
    "empty.npy": (_npy(np.zeros((0, 14, 14, 1), np.uint8)), "an empty batch (shape [0, 14, 14, 1])"),
    "billion.npy": (_npy(header={"descr": "|u1", "fortran_order": False, "shape": (10**9, 14, 14, 1)}),
                    "its header declares [1000000000, 14, 14, 1] (196000000000 bytes), the file holds 0 bytes"),
    "short.npy": (_npy(header={"descr": "|u1", "fortran_order": False, "shape": (2, 14, 14, 1)}, data=b"\0" * 300),
                  "(392 bytes), the file holds 300 bytes"),
    "long.npy": (_npy(header={"descr": "|u1", "fortran_order": False, "shape": (1, 14, 14, 1)}, data=b"\0" * 300),
                 "(196 bytes), the file holds 300 bytes"),
    "float.npy": (_npy(np.zeros((1, 14, 14, 1), np.float32)), "images must be uint8 (0..255), got float32"),
    "magic-only.npy": (b"\x93NUMPY", "not a readable .npy of images ("),
    "cut-header.npy": (_npy(np.zeros((1, 14, 14, 1), np.uint8))[:30], "not a readable .npy of images ("),
    "bad-header.npy": (b"\x93NUMPY\x01\x00\x10\x00{'shape': 7}   \n", "not a readable .npy of images ("),
    "version-9.npy": (b"\x93NUMPY\x09\x00" + b"\0" * 60, "not a readable .npy of images ("),
    "objects.npy": (_npy(header={"descr": "|O", "fortran_order": False, "shape": (1,)}, data=b"\0" * 8),
                    "images must be uint8"),
}


@pytest.mark.parametrize("name", sorted(BAD_BATCHES))
def test_predict_refuses_a_bad_batch_in_one_line(name, tmp_path, capfd, grey_server):
    data, words = BAD_BATCHES[name]
    (tmp_path / name).write_bytes(data)
    assert predict_cli.main(["--server", grey_server.url, "--model-name", "m", str(tmp_path / name)]) == 2
    _one_line(capfd, tmp_path / name, words)


def test_a_fortran_order_batch_is_read_as_numpy_reads_it(tmp_path):
    from mlp_core.data.image_files import find_inputs

    array = np.asfortranarray(np.random.default_rng(3).integers(0, 256, (2, 14, 14, 1), dtype=np.uint8))
    np.save(tmp_path / "f.npy", array)
    np.testing.assert_array_equal(find_inputs([str(tmp_path / "f.npy")])[0][0].array, array)


@pytest.mark.parametrize("sizes", [[-1, 100000, 100000, 3], [-1, 4096, 4097, 4], [-1, 2**31, 2, 1]])
def test_a_served_shape_too_large_to_convert_to_is_refused_before_decoding(sizes, tmp_path, capfd):
    (tmp_path / "a.png").write_bytes(GOOD_PNG)
    with _Metadata(sizes) as server:
        assert predict_cli.main(["--server", server.url, "--model-name", "m", "--resize", str(tmp_path / "a.png")]) == 2
    line = _one_line(capfd, f"{server.url}/v1/models/m/metadata", "")
    assert "MiB per image, more than the 64 MiB an image may" in line or "no known shape" in line, line


SPECIAL_FILES = {
    "fifo": (lambda path: os.mkfifo(path), "is a named pipe (FIFO), not a regular file"),
    "link to /dev/zero": (lambda path: os.symlink("/dev/zero", path), "is a character device, not a regular file"),
    "socket": (lambda path: socket.socket(socket.AF_UNIX).bind(str(path)), "is a socket, not a regular file"),
    "link loop": (lambda path: os.symlink(path.name, path), "cannot read"),
}


@pytest.mark.parametrize("kind", sorted(SPECIAL_FILES))
def test_a_special_file_among_the_images_is_refused_by_name(kind, tmp_path, capfd, grey_server, monkeypatch):
    """Never opened, so never waited on: ingest and predict (a folder of images) refuse it in one line."""
    plant, words = SPECIAL_FILES[kind]
    bad = _source(tmp_path, "special.png", b"")
    bad.unlink()
    plant(bad)
    out = tmp_path / "ds"
    assert ingest_cli.main(["--output", str(out), "--source", str(tmp_path / "src"), "--no-progress"]) == 2
    _one_line(capfd, bad, words)
    assert not out.exists()
    monkeypatch.chdir(tmp_path / "src" / "train")
    assert predict_cli.main(["--server", grey_server.url, "--model-name", "m", "b"]) == 2
    _one_line(capfd, "b/zz-special.png", words)


def test_a_jpeg_with_bytes_after_its_end_marker_or_an_exif_thumbnail_is_an_image(tmp_path):
    """Cameras append data after EOI and embed thumbnails (with their own EOI) before the frame: both decode."""
    from mlp_core.data.image_header import read_header

    thumbnail = b"\xff\xe1" + (2 + 6 + len(GOOD_JPEG)).to_bytes(2, "big") + b"Exif\0\0" + GOOD_JPEG
    for data in (GOOD_JPEG + b"trailer" * 10, GOOD_JPEG[:2] + thumbnail + GOOD_JPEG[2:]):
        assert read_header("x.jpg", data).shape == (14, 14, 1)
    with pytest.raises(UserError, match="no end marker"):  # the thumbnail's EOI does not hide a cut image
        read_header("x.jpg", (GOOD_JPEG[:2] + thumbnail + GOOD_JPEG[2:])[:-40])
