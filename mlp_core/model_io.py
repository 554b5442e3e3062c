"""The Model artifact: ``params.npz`` (loaded with ``allow_pickle=False``), ``config.json``, ``dataset.json``,
``history.json``, the serving export ``saved_model/1/`` (``mlp_core.export``), ``_COMPLETE.json`` last.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlp_core.config import TrainConfig
from mlp_core.errors import UserError
from artifacts import locations, storage
from artifacts.outputs import read_marker
from artifacts.schemas import check_model_files, loads

if TYPE_CHECKING:  # a name for annotations: reading a model's files needs no JAX (publish's CLI starts without it)
    from mlp_core.model import Params

PARAMS_FILE = "params.npz"
CONFIG_FILE = "config.json"
DATASET_FILE = "dataset.json"
HISTORY_FILE = "history.json"


def params_to_arrays(params: Params) -> dict[str, np.ndarray]:
    arrays = {}
    for i, (w, b) in enumerate(params):
        arrays[f"layer_{i}_w"] = np.asarray(w)
        arrays[f"layer_{i}_b"] = np.asarray(b)
    return arrays


def save_params(path: str | Path, params: Params) -> None:
    with open(path, "wb") as f:
        np.savez(f, **params_to_arrays(params))


def params_to_bytes(params: Params) -> bytes:
    """``params`` as the bytes of a ``.npz`` file (what ``save_params`` writes)."""
    buffer = io.BytesIO()
    np.savez(buffer, **params_to_arrays(params))
    return buffer.getvalue()


def load_params(path: str | Path, layer_sizes: tuple[int, ...] | None = None) -> Params:
    """Params from ``path``; with ``layer_sizes``, checks every shape against it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model params not found: {path}")
    return params_from_bytes(storage.read_bytes(path, storage.PARAMS), str(path), layer_sizes)


def params_from_bytes(data: bytes, path: str, layer_sizes: tuple[int, ...] | None = None) -> Params:
    """Params from the bytes of a ``.npz`` file read from ``path`` (named in errors); see ``load_params``."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    num_layers = len(arrays) // 2
    names = [f"layer_{i}_{p}" for i in range(num_layers) for p in "wb"]
    if sorted(arrays) != sorted(names) or num_layers == 0:
        raise UserError(f"{path} does not hold an MLP's layer_<i>_w/layer_<i>_b arrays (found {', '.join(sorted(arrays))})")
    params = [(arrays[f"layer_{i}_w"], arrays[f"layer_{i}_b"]) for i in range(num_layers)]
    if layer_sizes is not None:
        expected = [((n, m), (n,)) for m, n in zip(layer_sizes[:-1], layer_sizes[1:])]
        found = [(w.shape, b.shape) for w, b in params]
        if found != expected:
            sizes = [params[0][0].shape[1]] + [w.shape[0] for w, _ in params]
            raise UserError(f"{path} holds a {'-'.join(map(str, sizes))} network, the config says {'-'.join(map(str, layer_sizes))}")
    return params


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"model file missing: {path}")
    return loads(storage.read_bytes(path, storage.MANIFEST), str(path))


def save_model(directory: str | Path, params: Params, config: TrainConfig, dataset: dict, history: list[dict]) -> None:
    directory = Path(directory)
    save_params(directory / PARAMS_FILE, params)
    (directory / CONFIG_FILE).write_text(config.to_json() + "\n")
    (directory / DATASET_FILE).write_text(json.dumps(dataset, indent=2) + "\n")
    (directory / HISTORY_FILE).write_text(json.dumps(history, indent=2) + "\n")


def load_model(directory: str | Path) -> tuple[Params, TrainConfig, dict, list[dict]]:
    """``(params, config, dataset identity, history)`` of a Model artifact, all checked."""
    directory = Path(directory)
    if not directory.exists():
        raise UserError(f"model folder does not exist: {directory}")
    if not directory.is_dir():
        raise UserError(f"model path is a file, expected a folder: {directory}")
    read_marker(directory, "model")
    raw = {name: _read_json(directory / name) for name in (CONFIG_FILE, DATASET_FILE, HISTORY_FILE)}
    try:
        check_model_files(raw[CONFIG_FILE], raw[DATASET_FILE], raw[HISTORY_FILE], str(directory))
        config = TrainConfig.from_dict(raw[CONFIG_FILE])
    except (UserError, TypeError) as e:
        raise UserError(str(e).splitlines()[0]) from None
    params = load_params(directory / PARAMS_FILE, config.layer_sizes)
    for i, (w, b) in enumerate(params):
        for name, array in ((f"layer_{i}_w", w), (f"layer_{i}_b", b)):
            if not np.all(np.isfinite(array)):
                raise UserError(f"{directory / PARAMS_FILE}: {name} holds non-finite weights; the model is unusable")
    dataset, history = raw[DATASET_FILE], raw[HISTORY_FILE]
    return params, config, dataset, history


def content_hash(model_dir: "str | Path") -> str:
    """sha256 over the model's listed files (relative names and bytes), in a fixed order; the commit marker aside."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    # the files the marker lists, names proven inside the model (verify=False: each is hashed here anyway)
    for name in sorted(Path(n) for n in read_marker(model_dir, "model", verify=False)["files"]):
        digest.update(name.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(storage.read_bytes(locations.member(model_dir, name.as_posix()), storage.PARAMS)).digest())
    return digest.hexdigest()
