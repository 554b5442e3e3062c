"""Real MNIST exported as image folders in tfds ImageFolder's layout (``<root>/<split>/<class>/<file>``), for tests.

Images are written with Pillow (PNG lossless, so the pixels are MNIST's own; JPEG at quality 95).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from uploads import upload_tree


def mnist_slice(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [N, 28, 28, 1], int64 [N])`` of a tfds split of MNIST, e.g. ``train[:300]``."""
    import tensorflow_datasets as tfds

    data = tfds.as_numpy(tfds.load("mnist", split=split, data_dir=data_dir, batch_size=-1))
    return data["image"], data["label"]


def write_images(folder: "str | Path", images: np.ndarray, labels: np.ndarray, fmt: str = "png",
                 mode: str = "L", start: int = 0, class_names: "list[str] | None" = None) -> list[Path]:
    """One file per image under ``folder/<class name>/``; ``mode`` ``L`` (grey) or ``RGB``; returns the paths."""
    from PIL import Image

    paths = []
    for i, (image, label) in enumerate(zip(images, labels), start):
        name = class_names[int(label)] if class_names else str(int(label))
        path = Path(folder) / name / f"{i:05d}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(np.asarray(image)[..., 0], "L")
        if mode != "L":
            picture = picture.convert(mode)
        picture.save(path, **({"quality": 95} if fmt in ("jpg", "jpeg") else {}))
        paths.append(path)
    return paths


def write_split_folder(root: "str | Path", train, test, **options) -> Path:
    """``root/train/<class>/...`` and ``root/test/<class>/...`` from ``(images, labels)`` pairs."""
    root = Path(root)
    write_images(root / "train", *train, **options)
    write_images(root / "test", *test, **options, start=100_000)
    return root


def upload(local: "str | Path", uri: str) -> str:
    """Copy a local folder to ``uri`` (``gs://`` or ``s3://``, same relative names); returns ``uri``."""
    upload_tree(local, uri)
    return uri
