"""Images named on a command line (files, folders walked, ``.npy`` batches) -> uint8 arrays at a model's image shape.

What predict reads. Two phases, so that bad input is refused before TensorFlow is imported:

- ``find_inputs`` and ``check_shapes`` are light (numpy and Pillow): every file exists and is a PNG or
  JPEG image (by its name or, for a name without an image extension, its first bytes) or a ``.npy``
  batch; a folder is walked recursively for the image-folder ingest's image names
  (``image_folder.IMAGE_EXTENSIONS``), in sorted order, other files skipped; an image's size and
  channels are read from its header (Pillow's ``Image.open`` reads only the header) and compared with
  the model's image shape.
- ``decode`` decodes the images with the ingest's own decoder (``image_folder.chunk_decoder``:
  TensorFlow's ``decode_image``, and with ``resize`` its channel conversion and
  ``tf.image.resize``, bilinear with antialiasing, rounded), so that an image is converted exactly
  as the images the model was trained on were when they were ingested with ``--resize``. Its shapes
  are the final word: an image whose header the light phase could not judge is refused here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlp_core.data.errors import DatasetError
from mlp_core.data.image_folder import IMAGE_EXTENSIONS

# The image formats the ingest decodes (tf.io.decode_image, as its docstring says): PNG and JPEG, by content.
FORMATS = ("PNG", "JPEG")
RESIZE_FLAG = "--resize"

# Channels TensorFlow's decode_image(channels=0) gives each Pillow mode, as measured on TensorFlow 2.21 and Pillow 13
# (tests/test_image_files.py holds the table to it): a palette PNG decodes to RGB, or RGBA when it has a tRNS chunk;
# a grey or RGB PNG's tRNS chunk is ignored; a CMYK JPEG decodes to RGB. Modes missing here are left to the decoder.
_PNG_CHANNELS = {"1": 1, "L": 1, "I;16": 1, "I;16B": 1, "I": 1, "LA": 2, "RGB": 3, "RGBA": 4}
_JPEG_CHANNELS = {"L": 1, "RGB": 3, "CMYK": 3}


@dataclass
class Input:
    """One file to predict on: ``shown`` as the user named it (a folder member: joined to the folder argument)."""

    shown: str
    path: Path
    kind: str  # "image" or "npy"
    shape: "tuple[int | None, ...] | None" = None  # an image's (H, W, C) from its header (C None: the decoder says)
    array: Any = None  # a .npy batch, uint8 [N, ...]


def shown(name: str) -> str:
    """``name`` as printed: escaped when it holds a character that is not printable (a newline would fake a line)."""
    return name if name.isprintable() else name.encode("unicode_escape", "backslashreplace").decode("ascii")


def find_inputs(arguments: list[str]) -> tuple[list[Input], list[str]]:
    """``(inputs, notes)``: every argument's files, folders walked; ``notes`` says what a folder walk skipped."""
    inputs, notes = [], []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            members, skipped = _walk(argument)
            if not members:
                raise DatasetError(f"{shown(argument)}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder "
                                   "or below it")
            if skipped:
                notes.append(f"{shown(argument)}: skipped {skipped} file(s) not named {', '.join(IMAGE_EXTENSIONS)}")
            inputs += [_image(os.path.join(argument, *parts)) for parts in members]
        elif path.is_file():
            inputs.append(_file(argument))
        elif path.exists():
            raise DatasetError(f"{shown(argument)} is neither a file nor a folder")
        else:
            raise DatasetError(f"input not found: {shown(argument)}")
    return inputs, notes


def _walk(folder: str) -> tuple[list[tuple[str, ...]], int]:
    """The image names below ``folder`` as path parts relative to it, sorted part by part, and how many files were not.

    Symlinked folders are not entered (``os.walk``'s default: a link cannot loop the walk); symlinked files count.
    """

    def refuse(error: OSError):
        raise DatasetError(f"cannot read folder {shown(error.filename or folder)}: {error.strerror or error}")

    members, skipped = [], 0
    for top, _, files in os.walk(folder, onerror=refuse):
        base = os.path.relpath(top, folder)
        parts = () if base == os.curdir else tuple(Path(base).parts)
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):  # as the ingest (and tfds's ImageFolder) names images
                members.append((*parts, name))
            else:
                skipped += 1
    return sorted(members), skipped


def _file(argument: str) -> Input:
    """A file named on the command line: a ``.npy`` batch, or an image by its name or, failing that, its first bytes."""
    path = Path(argument)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _npy(argument)
    if suffix in IMAGE_EXTENSIONS:
        return _image(argument)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise DatasetError(f"cannot read {shown(argument)}: {e.strerror or e}") from None
    if head.startswith(b"\x93NUMPY"):  # numpy/lib/format.py MAGIC_PREFIX
        return _npy(argument)
    if head.startswith(b"\x89PNG\r\n\x1a\n") or head.startswith(b"\xff\xd8\xff"):  # the PNG signature, a JPEG's SOI
        return _image(argument)
    raise DatasetError(f"{shown(argument)}: inputs are PNG or JPEG images ({', '.join(IMAGE_EXTENSIONS)}), folders "
                       "of them, or .npy batches; this file is none of them")


def _image(name: str) -> Input:
    """An image file, its shape read from its header by Pillow (nothing decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        # PIL/Image.py open(): "a lazy operation; this function identifies the file, but the file remains open and
        # the actual image data is not read from the file until you try to process the data". formats= limits the
        # plugins tried to those two.
        with Image.open(name, formats=FORMATS) as image:
            width, height = image.size
            table = _PNG_CHANNELS if image.format == "PNG" else _JPEG_CHANNELS
            channels = table.get(image.mode)
            if image.mode == "P":
                channels = 4 if "transparency" in image.info else 3
    except UnidentifiedImageError:
        raise DatasetError(f"{shown(name)} is not a PNG or JPEG image") from None
    except Image.DecompressionBombError as e:  # a header claiming billions of pixels
        raise DatasetError(f"{shown(name)}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:  # a truncated or damaged header
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(f"{shown(name)} is not a readable PNG or JPEG image: {why}") from None
    return Input(name, Path(name), "image", (height, width, channels))


def _npy(name: str) -> Input:
    import numpy as np

    try:
        array = np.load(name, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # a .npy of objects, a damaged header
        raise DatasetError(f"{shown(name)} is not a readable .npy of images: {str(e).splitlines()[0]}") from None
    if array.dtype != np.uint8:
        raise DatasetError(f"{shown(name)}: images must be uint8 (0..255), got {array.dtype}")
    return Input(name, Path(name), "npy", array=array)


def check_shapes(inputs: list[Input], image_shape: list[int], resize: bool) -> None:
    """Every input at ``image_shape`` (an image's header, a batch's array), or one that ``resize`` converts."""
    image_shape = list(image_shape)
    images = [i for i in inputs if i.kind == "image"]
    if images and len(image_shape) != 3:
        raise DatasetError(f"{shown(images[0].shown)}: the model takes {image_shape}, not images of height, width "
                           "and channels; give it .npy batches")
    if images and resize and image_shape[2] not in (1, 3, 4):  # what decode_image(channels=C) converts to
        raise DatasetError(f"{RESIZE_FLAG} converts images to 1, 3 or 4 channels (grey, RGB, RGBA); the model takes "
                           f"{image_shape}")
    for item in inputs:
        if item.kind == "npy":
            array = item.array[None] if item.array.ndim == len(image_shape) else item.array  # one image
            item.array = array
            if list(array.shape[1:]) != image_shape:
                raise DatasetError(f"{shown(item.shown)}: images must be {image_shape}, got {list(array.shape[1:])} "
                                   f"({RESIZE_FLAG} converts image files, not .npy batches)")
        elif not resize and (list(item.shape[:2]) != image_shape[:2] or item.shape[2] not in (None, image_shape[2])):
            _refuse_shape(item, item.shape, image_shape)


def _refuse_shape(item: Input, got, image_shape: list[int]):
    got = ", ".join("?" if v is None else str(int(v)) for v in got)
    raise DatasetError(f"{shown(item.shown)}: images must be {list(image_shape)}, got [{got}] "
                       f"(give {RESIZE_FLAG} to resize and convert it)")


def decode(inputs: list[Input], image_shape: list[int], resize: bool):
    """``(uint8 [N, *image_shape], names, resized)``: images decoded (converted with ``resize``), batches as they are.

    ``names``: one per image, a batch's as ``<file>[i]``; ``resized``: how many images ``resize`` converted.
    """
    import numpy as np

    images = [i for i in inputs if i.kind == "image"]
    decoded: dict[int, Any] = {}
    resized = 0
    if images:
        from mlp_core.data.image_folder import CHUNK, chunk_decoder, op_message
        from mlp_core.data.tf import tf

        decoder = chunk_decoder(tuple(image_shape), resize)  # the ingest's, so predict converts as ingest did
        for start in range(0, len(images), CHUNK):
            chunk = images[start:start + CHUNK]
            data = []
            for item in chunk:
                try:
                    data.append(item.path.read_bytes())
                except OSError as e:
                    raise DatasetError(f"cannot read {shown(item.shown)}: {e.strerror or e}") from None
            try:
                arrays, shapes = decoder(tf.constant(data, tf.string))
            except tf.errors.OpError as e:
                for item, blob in zip(chunk, data):  # the compiled call says only that one of them did not decode
                    try:
                        tf.io.decode_image(blob, channels=0, expand_animations=False)
                    except tf.errors.OpError as one:
                        raise DatasetError(f"{shown(item.shown)} does not decode: {op_message(one)}") from None
                raise DatasetError(f"{shown(chunk[0].shown)} ... do not decode: {op_message(e)}") from None
            arrays, shapes = arrays.numpy(), shapes.numpy()
            for item, array, own in zip(chunk, arrays, shapes):
                if list(own) != list(image_shape):
                    if not resize:
                        _refuse_shape(item, own, image_shape)
                    resized += 1
                decoded[id(item)] = array[None]
    names, batches = [], []
    for item in inputs:
        if item.kind == "npy":
            names += [f"{shown(item.shown)}[{i}]" for i in range(len(item.array))]
            batches.append(item.array)
        else:
            names.append(shown(item.shown))
            batches.append(decoded[id(item)])
    return np.concatenate(batches), names, resized
