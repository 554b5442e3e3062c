"""Images named on predict's command line (files, folders walked, ``.npy`` batches) -> uint8 arrays at a model's shape.

``find_inputs`` and ``check_shapes`` refuse bad input from headers alone, before TensorFlow loads;
``decode`` decodes with the ingest's own decoder (``image_folder.chunk_decoder``), so an image is converted exactly as
the training images were with ``--resize``, and its shapes are the final word.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts import storage
from mlp_core.data import image_header
from mlp_core.errors import UserError
from mlp_core.data.image_folder import CHUNK, IMAGE_EXTENSIONS, chunk_decoder, decode_chunk

RESIZE_FLAG = "--resize"


@dataclass
class Input:
    """One file to predict on: ``shown`` as the user named it (a folder member: joined to the folder argument)."""

    shown: str
    path: Path
    kind: str  # "image" or "npy"
    shape: "tuple[int, int, int] | None" = None  # an image's (H, W, C) from its header
    array: Any = None  # a .npy batch, uint8 [N, ...]
    header: "image_header.Header | None" = None


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
                raise UserError(f"{shown(argument)}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder "
                                   "or below it")
            if skipped:
                notes.append(f"{shown(argument)}: skipped {skipped} file(s) not named {', '.join(IMAGE_EXTENSIONS)}")
            inputs += [_image(os.path.join(argument, *parts)) for parts in members]
        elif path.is_file():
            inputs.append(_file(argument))
        elif path.exists():
            raise UserError(f"{shown(argument)} is neither a file nor a folder")
        else:
            raise UserError(f"input not found: {shown(argument)}")
    return inputs, notes


def _walk(folder: str) -> tuple[list[tuple[str, ...]], int]:
    """The image names below ``folder`` as sorted path parts, and how many files were not; symlinked folders not entered."""

    def refuse(error: OSError):
        raise UserError(f"cannot read folder {shown(error.filename or folder)}: {error.strerror or error}")

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


def _read(name: str, limit: int) -> bytes:
    try:
        return storage.read_bytes(name, limit)
    except storage.StorageError as e:  # a FIFO, a device, a link to /dev/zero, too large: refused by name
        raise UserError(shown(str(e))) from None


def _file(argument: str) -> Input:
    """A file named on the command line: a ``.npy`` batch, or an image by its name or, failing that, its first bytes."""
    suffix = Path(argument).suffix.lower()
    if suffix == ".npy":
        return _npy(argument)
    if suffix in IMAGE_EXTENSIONS:
        return _image(argument)
    head = _read(argument, storage.FILE)[:8]
    if head.startswith(b"\x93NUMPY"):  # numpy/lib/format.py MAGIC_PREFIX
        return _npy(argument)
    if image_header.kind_of(head):
        return _image(argument)
    raise UserError(f"{shown(argument)}: inputs are PNG or JPEG images ({', '.join(IMAGE_EXTENSIONS)}), folders "
                       "of them, or .npy batches; this file is none of them")


def _image(name: str) -> Input:
    """An image file, its shape read from its header (nothing decoded)."""
    header = image_header.read_header(shown(name), _read(name, storage.IMAGE))
    image_header.check_pixels(shown(name), header)
    return Input(name, Path(name), "image", header.shape, header=header)


def _npy(name: str) -> Input:
    """A ``.npy`` uint8 batch, its header checked against the file's size before its data is used."""
    import numpy as np  # here: predict refuses bad input without loading numpy

    raw = _read(name, storage.FILE)
    stream = io.BytesIO(raw)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        version = np.lib.format.read_magic(stream)
        if version not in readers:  # 3.0 (names in UTF-8) too: numpy writes it only for such names
            raise ValueError(f"format version {version[0]}.{version[1]}, not 1.0 or 2.0")
        shape, fortran_order, dtype = readers[version](stream)
    except (ValueError, EOFError) as e:  # not a .npy, a damaged header
        raise UserError(f"{shown(name)}: not a readable .npy of images ({str(e).splitlines()[0][:120]})") from None
    if dtype != np.uint8:
        raise UserError(f"{shown(name)}: images must be uint8 (0..255), got {dtype}")
    count = 1
    for v in shape:
        count *= v
    if count != len(raw) - stream.tell():
        raise UserError(f"{shown(name)}: its header declares {list(shape)[:8]} ({count} bytes), the file holds "
                           f"{len(raw) - stream.tell()} bytes of data")
    if count == 0:
        raise UserError(f"{shown(name)}: an empty batch (shape {list(shape)[:8]}): no image to predict")
    array = np.frombuffer(raw, np.uint8, offset=stream.tell()).reshape(shape, order="F" if fortran_order else "C")
    return Input(name, Path(name), "npy", array=array)


def check_shapes(inputs: list[Input], image_shape: list[int], resize: bool) -> None:
    """Every input at ``image_shape`` (an image's header, a batch's array), or one that ``resize`` converts."""
    image_shape = list(image_shape)
    images = [i for i in inputs if i.kind == "image"]
    if images and len(image_shape) != 3:
        raise UserError(f"{shown(images[0].shown)}: the model takes {image_shape}, not images of height, width "
                           "and channels; give it .npy batches")
    if images and resize and image_shape[2] not in (1, 3, 4):  # what decode_image(channels=C) converts to
        raise UserError(f"{RESIZE_FLAG} converts images to 1, 3 or 4 channels (grey, RGB, RGBA); the model takes "
                           f"{image_shape}")
    for item in inputs:
        if item.kind == "npy":
            array = item.array[None] if item.array.ndim == len(image_shape) else item.array  # one image
            item.array = array
            if list(array.shape[1:]) != image_shape:
                raise UserError(f"{shown(item.shown)}: images must be {image_shape}, got {list(array.shape[1:])} "
                                   f"({RESIZE_FLAG} converts image files, not .npy batches)")
        elif not resize and list(item.shape) != image_shape:
            _refuse_shape(item, item.shape, image_shape)
        else:
            image_header.check_pixels(shown(item.shown), item.header, tuple(image_shape), resize)


def _refuse_shape(item: Input, got, image_shape: list[int]):
    got = ", ".join("?" if v is None else str(int(v)) for v in got)
    raise UserError(f"{shown(item.shown)}: images must be {list(image_shape)}, got [{got}] "
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
        decoder = chunk_decoder(tuple(image_shape), resize)  # the ingest's, so predict converts as ingest did
        for start in range(0, len(images), CHUNK):
            chunk = images[start:start + CHUNK]
            data = [_read(str(item.path), storage.IMAGE) for item in chunk]
            for item, blob in zip(chunk, data):  # read again: the file may have changed since its header was
                image_header.check_pixels(shown(item.shown), image_header.read_header(shown(item.shown), blob),
                                          tuple(image_shape), resize)
            arrays, shapes = decode_chunk(decoder, [shown(i.shown) for i in chunk], data, tuple(image_shape), resize)
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
