"""Your own labelled images, ``<root>/<split>/<class name>/<image>`` (tfds ``ImageFolder``'s layout) -> a Dataset artifact.

``<root>``: local or an object store, or a span or date pattern (``spans``). As in tfds, classes are the class folders'
names, sorted, and each split's files are shuffled by ``random.Random(<split folder>)``. TensorFlow decodes; the first
train image or ``image_shape`` fixes the shape (others refused unless ``resize``). No TensorFlow or numpy at import.
"""

from __future__ import annotations

import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts import locations, storage
from mlp_core.data import image_header
from mlp_core.data import spans as spans_lib
from mlp_core.errors import UserError

# tfds ImageFolder's _SUPPORTED_IMAGE_FORMAT, compared lowercased as it does.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Images decoded per call of the compiled decoder; 1024 MNIST PNGs are ~300 KB.
CHUNK = 1024
# Object-store reads in flight: one small object per request, so latency, not bandwidth, bounds them.
REMOTE_READERS = 16
_SHAPE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass(frozen=True)
class ImageFile:
    name: str  # relative to the source's base: what the fingerprint records
    location: str  # where it is read from
    label: int


@dataclass(frozen=True)
class FolderSource:
    """What a source resolved to: its base, the spans read, the classes and each split's files (shuffled)."""

    pattern: str
    base: str
    spans: list[spans_lib.Span]
    class_names: list[str]
    files: dict[str, list[ImageFile]]  # split name -> files


def parse_image_shape(text: str, resize: bool) -> "tuple[int, int, int] | None":
    """``"28x28x1"`` -> ``(28, 28, 1)``; ``""`` -> None (the first image decides)."""
    if not text:
        return None
    match = _SHAPE.match(text)
    if not match or not all(0 < int(v) <= 65536 for v in match.groups()) or not 1 <= int(match.group(3)) <= 4:
        raise UserError(f"image_shape: {text!r} is not HEIGHTxWIDTHxCHANNELS (e.g. 28x28x1; 1 to 4 channels)",
                        field="image_shape")
    shape = tuple(int(v) for v in match.groups())
    image_header.check_shape("--image-shape", shape, "images of")
    if resize and shape[2] == 2:
        raise UserError("image_shape: --resize converts to 1, 3 or 4 channels (grey, RGB, RGBA), not 2",
                        field="image_shape")
    return shape  # type: ignore[return-value]


def list_tree(location: str) -> list[str]:
    """Every file under ``location``, ``/``-separated and relative to it, and every folder as ``name/`` (empty ones show)."""
    if storage.is_remote(location):
        names = storage.list_names(location)
        for name in names:  # a listing is input: every name must be an object path inside the location
            locations.check_object_path(name.rstrip("/"), "--source", "object name")
        return names
    root = Path(location)
    if not root.is_dir():
        return []
    names = []
    for folder, subfolders, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel == "." else rel + "/"
        names += [f"{prefix}{d}/" for d in subfolders] + [prefix + f for f in files]
    for name in names:
        locations.check_object_path(name.rstrip("/"), "--source", "file name")  # no control character in a record
    return sorted(names)


def resolve_source(pattern: str, span_window: int, split_folders: dict[str, str]) -> FolderSource:
    """List the source (its newest ``span_window`` spans if ``pattern`` has a span or date part) and check its layout.

    ``split_folders``: the Dataset's split -> the folder it is read from (``{"train": "train", "test": "test"}``).
    """
    pattern = locations.check_location(pattern, "--source")
    for split, folder in split_folders.items():
        if "/" in folder or "[" in folder or folder in ("", ".", ".."):
            raise UserError(f"{split}_split: {folder!r} must be a split folder's name for an image folder "
                            "source (no tfds slicing)", field=f"{split}_split")
    if spans_lib.has_spec(pattern):
        base, _ = spans_lib.split_pattern(pattern)
        names = list_tree(base)
        spans = spans_lib.resolve(pattern, names, span_window, storage.join)
        roots = [span.name + "/" for span in spans]
    else:
        if span_window != 1:
            raise UserError(f"span_window {span_window} needs a --source with {spans_lib.SPAN_SPEC} or "
                            "{YYYY}/{MM}/{DD} in it", field="span_window")
        base, spans, roots = pattern, [], [""]
        names = list_tree(base)
        if not names:
            raise UserError(f"source: {pattern} holds no files (or does not exist)", field="source")
    classes, found = _scan(base, names, roots, split_folders)
    class_names = sorted(classes)
    if len(class_names) < 2:
        raise UserError(f"source: {pattern} has {len(class_names)} class folder(s) ({', '.join(class_names)}); "
                        "a classifier needs at least 2", field="source")
    for split, by_class in found.items():
        if missing := [c for c in class_names if c not in by_class]:
            other = next(s for s in found if missing[0] in found[s])
            raise UserError(f"source: class {missing[0]!r} has images in {split_folders[other]}/ but none in "
                            f"{split_folders[split]}/ (every class needs images in both splits)", field="source")
    label = {name: i for i, name in enumerate(class_names)}
    files: dict[str, list[ImageFile]] = {}
    for split, by_class in found.items():
        listed = sorted((name, class_name) for class_name, names in by_class.items() for name in names)
        entries = [ImageFile(name, _join(base, name), label[class_name]) for name, class_name in listed]
        random.Random(split_folders[split]).shuffle(entries)  # as tfds: a fixed order per split folder, classes mixed
        files[split] = entries
    return FolderSource(pattern, base, spans, class_names, files)


def _join(base: str, name: str) -> str:
    """``base`` and a ``/``-separated name under it (a string join: Path objects cost more than the read, per file)."""
    return f"{base.rstrip('/')}/{name}" if storage.is_remote(base) else os.path.join(base, *name.split("/"))


def _scan(base: str, names: list[str], roots: list[str], split_folders: dict[str, str]):
    """Class names, and each split's image names by class (relative to ``base``), of the folders ``roots``."""
    classes: set[str] = set()
    found: dict[str, dict[str, list[str]]] = {split: {} for split in split_folders}
    for root in roots:
        for split, folder in split_folders.items():
            prefix = f"{root}{folder}/"
            class_folders: dict[str, list[str]] = {}
            seen = False
            for name in names:
                if not name.startswith(prefix):
                    continue
                seen = True
                parts = name[len(prefix):].split("/")
                is_image = not name.endswith("/") and parts[-1].lower().endswith(IMAGE_EXTENSIONS)
                if len(parts) >= 2:
                    class_folders.setdefault(parts[0], [])
                if is_image and len(parts) == 2:
                    class_folders[parts[0]].append(name)
                elif is_image:
                    where = "directly in the split folder" if len(parts) == 1 else "nested below its class folder"
                    raise UserError(f"source: image {_join(base, name)} is {where}; the layout "
                                    "is <split>/<class name>/<image>", field="source")
            if not seen:
                where = _join(base, root.rstrip('/')) if root else base
                raise UserError(f"source: {_join(base, root + folder)} is missing "
                                f"(expected {folder}/<class name>/<image> in {where})", field="source")
            for class_name, images in sorted(class_folders.items()):
                if not images:
                    raise UserError(f"source: class folder {_join(base, prefix + class_name)} "
                                    "holds no image (.png, .jpg, .jpeg)", field="source")
                classes.add(class_name)
                found[split].setdefault(class_name, []).extend(images)
    return classes, found


def read_file(location: str) -> bytes:
    """The bytes of one source file (a regular file or an object, at most ``storage.IMAGE``)."""
    try:
        return storage.read_bytes(location, storage.IMAGE)
    except storage.StorageError:
        raise
    except Exception as e:  # google.api_core / botocore errors: the object vanished, no access, no network
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise storage.StorageError(f"cannot read {location}: {text}") from None


def check_image(location: str, data: bytes, shape: "tuple[int, int, int] | None", resize: bool):
    """The image's header, checked before any pixel is decoded: valid, within the cap, ``shape`` or ``resize``."""
    header = image_header.read_header(location, data)
    image_header.check_pixels(location, header, shape, resize)
    if shape is not None and not resize and header.shape != tuple(shape):
        raise UserError(f"image {location} is {_shape_text(header.shape)}, not {_shape_text(shape)} like the "
                           "others (give --resize to convert it)")
    return header


def _decode_one(data, shape: tuple[int, int, int], resize: bool):
    """One encoded image -> ``(uint8 [H, W, C] at shape, its own shape int32 [3])`` (see ``chunk_decoder``)."""
    from mlp_core.data.tf import tf

    height, width, channels = shape
    target = tf.constant(shape, tf.int32)
    image = tf.io.decode_image(data, channels=0, expand_animations=False)
    own = tf.stack(tf.unstack(tf.shape(image), num=3))  # a plain int32 tensor (a shape one warns in map_fn)
    if resize:
        # decode_image converts channels itself (grey <-> RGB, alpha dropped or added) when asked for C.
        image = tf.cond(own[2] == channels, lambda: image,
                        lambda: tf.io.decode_image(data, channels=channels, expand_animations=False))
        image = tf.cond(tf.reduce_all(own[:2] == target[:2]), lambda: image, lambda: tf.cast(
            tf.clip_by_value(tf.round(tf.image.resize(image, [height, width], antialias=True)), 0, 255), tf.uint8))
    else:
        image = tf.cond(tf.reduce_all(own == target), lambda: image, lambda: tf.zeros(shape, tf.uint8))
    return tf.ensure_shape(image, shape), own


def chunk_decoder(shape: tuple[int, int, int], resize: bool):
    """Compiled: ``string [N]`` -> ``(uint8 [N, H, W, C], own shapes int32 [N, 3])``; without ``resize`` a misfit is zeros."""
    from mlp_core.data.tf import tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(batch):
        return tf.map_fn(lambda data: _decode_one(data, shape, resize), batch, parallel_iterations=64,
                         fn_output_signature=(tf.TensorSpec(shape, tf.uint8), tf.TensorSpec([3], tf.int32)))

    return decode


def decode_chunk(decoder, names: list[str], data: list[bytes], shape: tuple[int, int, int], resize: bool):
    """``decoder``'s ``(images, own shapes)`` as numpy; a file that does not decode is found (alone) and named."""
    from mlp_core.data.tf import tf

    try:
        images, shapes = decoder(tf.constant(data, tf.string))
    except tf.errors.OpError as error:
        for name, blob in zip(names, data):
            try:
                _decode_one(tf.constant(blob), shape, resize)
            except tf.errors.OpError as e:
                raise image_header.undecodable(name, blob, e) from None
        raise image_header.undecodable(f"{names[0]} ...", data[0], error) from None
    return images.numpy(), shapes.numpy()


class ImageReader:
    """Reads, fingerprints and decodes a split's files in chunks; yields ``(uint8 image, label)`` in order."""

    def __init__(self, shape: tuple[int, int, int], resize: bool):
        self.shape, self.resize = shape, resize
        self.records: list[dict] = []  # spans.file_record of every file read
        self.resized = 0
        self._decode = chunk_decoder(shape, resize)

    def examples(self, files: list[ImageFile]):
        import numpy as np

        remote = any(storage.is_remote(f.location) for f in files[:1])
        with ThreadPoolExecutor(max_workers=REMOTE_READERS) as pool:
            for start in range(0, len(files), CHUNK):
                chunk = files[start : start + CHUNK]
                # A local read takes microseconds, less than handing it to a thread.
                data = list(pool.map(lambda f: read_file(f.location), chunk)) if remote else [read_file(f.location) for f in chunk]
                for f, d in zip(chunk, data):  # every header before any pixel is decoded
                    check_image(f.location, d, self.shape, self.resize)
                self.records += [spans_lib.file_record(f.name, d) for f, d in zip(chunk, data)]
                images, shapes = decode_chunk(self._decode, [f.location for f in chunk], data, self.shape, self.resize)
                differ = np.flatnonzero((shapes != np.array(self.shape)).any(axis=1))
                if len(differ) and not self.resize:  # the decoder's shape is the final word
                    i = differ[0]
                    raise UserError(f"image {chunk[i].location} is {_shape_text(shapes[i])}, not "
                                       f"{_shape_text(self.shape)} like the others (give --resize to convert it)")
                self.resized += len(differ)
                for image, f in zip(images, chunk):
                    yield image, f.label


def _shape_text(shape) -> str:
    return "x".join(str(int(v)) for v in shape)


def first_image_shape(source: FolderSource) -> tuple[tuple[int, int, int], str]:
    """The shape of the first train image in name order (its header), and its location: it fixes the dataset's."""
    first = min(source.files["train"], key=lambda f: f.name)
    return check_image(first.location, read_file(first.location), None, False).shape, first.location


def ingest_image_folder(
    output: "str | Path",
    *,
    source: str,
    span_window: int,
    image_shape: str,
    resize: bool,
    train_split: str,
    test_split: str,
    records_per_shard: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the image folder (or its newest spans) at ``source`` as a Dataset artifact at ``output``; returns the metadata.

    Everything is listed and checked before anything is written; a bad file ends the write, which is removed.
    """
    import numpy as np  # these here: predict imports this module and refuses bad input before they load
    from tqdm import tqdm

    from mlp_core.data.artifact import write_metadata
    from mlp_core.data.records import write_shards
    from artifacts.outputs import artifact_writer, check_apart, check_artifact_output

    declared = parse_image_shape(image_shape, resize)
    if records_per_shard <= 0:
        raise UserError(f"records_per_shard must be a positive integer, got {records_per_shard}")
    check_apart({"--source": spans_lib.split_pattern(source)[0] if spans_lib.has_spec(source) else source},
                {"--output": output})
    check_artifact_output(output, "dataset")
    folder = resolve_source(source, span_window, {"train": train_split, "test": test_split})
    shape, shape_from = (declared, "--image-shape") if declared else first_image_shape(folder)
    reader = ImageReader(shape, resize)
    splits: dict[str, Any] = {}
    with artifact_writer(output, "dataset") as tmp:
        for split, files in folder.files.items():
            class_counts = np.bincount([f.label for f in files], minlength=len(folder.class_names))
            with tqdm(total=len(files), desc=f"ingest {split}", unit="img", disable=not progress, mininterval=1.0) as bar:
                shards = write_shards(tmp, split, _ticking(reader.examples(files), bar), len(files), records_per_shard)
            splits[split] = {
                "folder": {"train": train_split, "test": test_split}[split],
                "num_examples": len(files),
                "class_counts": class_counts.tolist(),
                "shards": [s.to_dict() for s in shards],
            }
        fingerprint = spans_lib.fingerprint(reader.records)
        metadata = {
            "dataset": {"name": "image_folder", "version": fingerprint[:12]},
            "image_shape": list(shape),
            "image_dtype": "uint8",
            "num_classes": len(folder.class_names),
            "class_names": folder.class_names,
            "splits": splits,
            "source": {
                "kind": "image_folder",
                "pattern": folder.pattern,
                "base": folder.base,
                "span_window": span_window,
                "spans": [span.to_dict() for span in folder.spans],
                "image_shape_from": shape_from,
                "resize": resize,
                "resized": reader.resized,
                "files": sorted(reader.records, key=lambda r: r["name"]),
                "fingerprint": fingerprint,
            },
        }
        write_metadata(tmp, metadata)
    return metadata


def _ticking(examples, bar):
    for example in examples:
        bar.update()
        yield example
