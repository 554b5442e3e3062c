"""Property-based fuzzing (Hypothesis) of every JSON file the steps read.

Each example damages one file of a real artifact (a key dropped, a value replaced
by any JSON value, a huge int, NaN, a value wrapped in a list, the whole file not
JSON), signs the artifact again so the damage gets past the commit marker, and
runs the step's library call. Property: the call either gives exactly the result
of the undamaged artifact, or raises one of the errors the command line turns
into one ``error:`` line with exit status 2 (``components._cli.expected_errors``)
with a one-line message; and the damaged input is never changed. Bounded: a fixed
example count, no deadline (the machines are shared and noisy).
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components._cli import expected_errors
from artifacts.outputs import commit

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


def _paths(node, prefix=()):
    """Every path to a node of a JSON document (the root included)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


@st.composite
def mutations(draw, document):
    """``(description, damaged document or raw text)``."""
    paths = list(_paths(document))
    path = draw(st.sampled_from(paths))
    kind = draw(st.sampled_from(["replace", "drop", "wrap", "huge", "nan", "not-json"] if path else ["replace", "not-json"]))
    if kind == "not-json":
        return kind, draw(st.sampled_from(["", "{", "[1, 2", "NaN", "{\"a\": 1} trailing", "\x00\xff"]))
    damaged = json.loads(json.dumps(document))
    parent = damaged
    for key in path[:-1]:
        parent = parent[key]
    if not path:
        return kind, draw(json_values)
    last = path[-1]
    if kind == "drop":
        del parent[last]
    elif kind == "wrap":
        parent[last] = [parent[last]]
    elif kind == "huge":
        parent[last] = 2**64 + draw(st.integers(0, 10))
    elif kind == "nan":
        parent[last] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    else:
        parent[last] = draw(json_values)
    return f"{kind} {'.'.join(map(str, path))}", damaged


def _write(path: Path, damaged) -> None:
    path.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))  # NaN/Infinity as Python writes them


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def _check_outcome(call, expected) -> str:
    """Run ``call``: equal to ``expected``, or an expected error with a one-line message. Returns the outcome."""
    try:
        result = call()
    except expected_errors() as e:
        message = str(e)
        assert message and "\n" not in message.strip(), f"multi-line error: {message!r}"
        return type(e).__name__
    expected_check = expected(result)
    assert expected_check, "accepted damaged input and gave another result"
    return "same result"


@pytest.fixture(scope="module")
def model(small_model):
    return small_model / "model"  # one epoch on small_dataset (conftest); copied before it is damaged


@pytest.fixture(scope="module")
def undamaged(small_dataset, model):
    from components.evaluate import evaluate_on_dataset
    from mlp_core.data.artifact import read_split

    return {"train": read_split(small_dataset, "train"), "test": read_split(small_dataset, "test"),
            "evaluation": evaluate_on_dataset(model, small_dataset)}


OUTCOMES: dict[str, dict[str, int]] = {}


def _tally(file: str, outcome: str) -> None:
    OUTCOMES.setdefault(file, {}).setdefault(outcome, 0)
    OUTCOMES[file][outcome] += 1


@FUZZ
@given(data=st.data())
def test_fuzzed_dataset_metadata(small_dataset, undamaged, tmp_path_factory, data):
    from mlp_core.data.artifact import load_metadata, read_split

    original = json.loads((small_dataset / "metadata.json").read_text())
    description, damaged = data.draw(mutations(original))
    dataset = tmp_path_factory.mktemp("ds") / "dataset"
    shutil.copytree(small_dataset, dataset)
    _write(dataset / "metadata.json", damaged)
    commit(dataset, "dataset")
    before = _digest(dataset)

    def call():
        metadata = load_metadata(dataset)
        return {split: read_split(dataset, split, metadata) for split in ("train", "test")}

    def same(result):
        return all(np.array_equal(a, b) for split in ("train", "test")
                   for a, b in zip(result[split], undamaged[split]))

    _tally("metadata.json", _check_outcome(call, same))
    assert _digest(dataset) == before, f"{description}: the input changed"


@pytest.mark.parametrize("file", ["config.json", "dataset.json", "history.json"])
@FUZZ
@given(data=st.data())
def test_fuzzed_model_files(small_dataset, model, undamaged, tmp_path_factory, file, data):
    from components.evaluate import evaluate_on_dataset

    original = json.loads((model / file).read_text())
    description, damaged = data.draw(mutations(original))
    copy = tmp_path_factory.mktemp("model") / "model"
    shutil.copytree(model, copy)
    _write(copy / file, damaged)
    commit(copy, "model")
    before = _digest(copy)

    def same(result):
        keys = ("test_accuracy", "test_loss", "confusion_matrix", "blessed")
        return all(result[k] == undamaged["evaluation"][k] for k in keys)

    _tally(file, _check_outcome(lambda: evaluate_on_dataset(copy, small_dataset), same))
    assert _digest(copy) == before, f"{description}: the input changed"


@st.composite
def shard_damage(draw, size: int):
    """``(description, function bytes -> bytes)``: truncation, flipped bytes, a rewritten length field, spliced records."""
    kind = draw(st.sampled_from(["truncate", "flip", "length", "splice", "append"]))
    at = draw(st.integers(0, size - 1))
    if kind == "truncate":
        return kind, lambda b: b[:at]
    if kind == "flip":
        mask = draw(st.integers(1, 255))
        return kind, lambda b: b[:at] + bytes([b[at] ^ mask]) + b[at + 1:]
    if kind == "length":  # the first record's 8-byte little-endian length
        value = draw(st.integers(0, 2**64 - 1))
        return kind, lambda b: value.to_bytes(8, "little") + b[8:]
    if kind == "splice":  # a record of another size: bytes cut out of the middle
        cut = draw(st.integers(1, 64))
        return kind, lambda b: b[:at] + b[at + cut:]
    junk = draw(st.binary(min_size=1, max_size=64))
    return kind, lambda b: b + junk


@FUZZ
@given(data=st.data())
def test_fuzzed_train_shards_with_resigned_checksums(small_dataset, undamaged, tmp_path_factory, data):
    """Damage a shard, then make metadata.json's sha256 and size agree, so the record reader must object."""
    from mlp_core.data.artifact import load_metadata, read_split
    from mlp_core.data.records import sha256_file

    dataset = tmp_path_factory.mktemp("ds") / "dataset"
    shutil.copytree(small_dataset, dataset)
    shard = dataset / data.draw(st.sampled_from(sorted(p.name for p in dataset.glob("train-*.tfrecord"))))
    description, damage = data.draw(shard_damage(shard.stat().st_size))
    shard.write_bytes(damage(shard.read_bytes()))
    metadata = json.loads((dataset / "metadata.json").read_text())
    for entry in metadata["splits"]["train"]["shards"]:
        if entry["name"] == shard.name:
            entry.update(num_bytes=shard.stat().st_size, sha256=sha256_file(shard))
    (dataset / "metadata.json").write_text(json.dumps(metadata))
    commit(dataset, "dataset")
    before = _digest(dataset)

    def same(result):
        return all(np.array_equal(a, b) for a, b in zip(result, undamaged["train"]))

    _tally("train shard", _check_outcome(lambda: read_split(dataset, "train", load_metadata(dataset)), same))
    assert _digest(dataset) == before, f"{description}: the input changed"


def test_fuzz_summary():
    """Prints how the generated cases ended (run with -s to see it)."""
    print("\nfuzz outcomes:", json.dumps(OUTCOMES, indent=1, sort_keys=True))
