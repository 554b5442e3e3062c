"""The trust boundary for locations, generated (Hypothesis): nothing written or deleted outside the named locations.

Every case runs in a sandbox folder; what lies outside the locations a case names
is listed before and after, and must be unchanged. Refusals are one line, exit 2.
"""

import contextlib
import hashlib
import io
import json
import os
import string
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifacts import locations
from mlp_core.errors import UserError
from artifacts.outputs import (COMPLETE, WRITING, OutputConflictError, artifact_writer,
                              commit, read_marker)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _listing(root: Path, skip: "tuple[Path, ...]" = ()) -> dict[str, str]:
    """Every file and folder under ``root`` (but ``skip``) with its content's sha256: any change shows."""
    seen = {}
    for path in sorted(root.rglob("*")):
        if any(path == s or s in path.parents for s in skip):
            continue
        seen[path.relative_to(root).as_posix()] = (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else "-")
    return seen


# -- names: what a hostile marker, run id or flag may hold -----------------------------------------------------------

_PART = st.sampled_from(["..", ".", "", "a", "b.txt", "victim.txt", "..a", "a..", "~", "-x", " ", "\\", "a\\..\\b",
                         "\n", "\x00", "sub"])
HOSTILE_NAMES = st.one_of(
    st.lists(_PART, min_size=1, max_size=5).map("/".join),
    st.lists(_PART, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    st.text(min_size=0, max_size=40),
)


def _escapes(root: Path, name: str) -> bool:
    """Would ``root / name`` (symlinks followed) land outside ``root``? The oracle, independent of locations.py."""
    try:
        target = os.path.realpath(os.path.join(root, name))
    except ValueError:  # a NUL
        return True
    return os.path.commonpath([target, os.path.realpath(root)]) != os.path.realpath(root)


@SETTINGS
@given(name=HOSTILE_NAMES)
def test_a_member_name_never_resolves_outside_its_artifact(tmp_path_factory, name):
    root = tmp_path_factory.mktemp("artifact")
    (root / "sub").mkdir()
    (root / "out").symlink_to(root.parent)  # a link out of the artifact: names through it must be refused too
    try:
        path = locations.member(root, name)
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert not _escapes(root, name), name
    assert path == root / name


_BUCKET_CHARS = string.ascii_lowercase + string.digits + "-._" + "A/:"
URIS = st.builds(
    lambda scheme, bucket, path: f"{scheme}{bucket}{path}",
    st.sampled_from(["gs://", "s3://", "gs:/", "gcs://", "GS://", "http://", "file://", "minio://", "s3:", "gs:"]),
    st.text(_BUCKET_CHARS, max_size=70),
    st.one_of(st.just(""), st.lists(_PART, max_size=4).map(lambda p: "/" + "/".join(p))),
)


@SETTINGS
@given(uri=URIS)
def test_a_remote_looking_location_is_valid_or_refused_in_one_line(uri):
    try:
        checked = locations.check_location(uri, "--output")
    except UserError as e:
        assert "\n" not in str(e) and str(e).startswith("--output: ")
        return
    scheme, _, rest = checked.partition("://")
    assert scheme in ("gs", "s3", "minio"), checked  # never a local path: every other URI-like text is refused
    bucket, _, path = rest.partition("/")
    assert 3 <= len(bucket) <= 222 and bucket == bucket.lower() and bucket[0].isalnum() and bucket[-1].isalnum()
    assert all(part not in ("", ".", "..") for part in path.split("/")) if path else True


@SETTINGS
@given(run_id=HOSTILE_NAMES)
def test_a_run_id_never_puts_checkpoints_outside_the_root(tmp_path_factory, run_id):
    from components.train import pipeline_checkpoint_dir

    root = tmp_path_factory.mktemp("root")
    try:
        where = pipeline_checkpoint_dir(str(root), "", run_id, log=lambda *_: None)
    except UserError as e:
        assert "\n" not in str(e)
        return
    if where is not None:
        assert not _escapes(root, os.path.relpath(where, root)), (run_id, where)
        assert Path(where).resolve().is_relative_to(root.resolve())


# -- markers: the clean-up of an old artifact deletes only what lies inside it ---------------------------------------

def _forged_artifact(folder: Path, names: "list[str]", kind: str = "model") -> None:
    folder.mkdir(parents=True)
    (folder / "params.npz").write_bytes(b"ours")
    commit(folder, kind)
    marker = json.loads((folder / COMPLETE).read_text())
    for name in names:
        marker["files"][name] = {"bytes": 6, "sha256": hashlib.sha256(b"victim").hexdigest()}
    (folder / COMPLETE).write_text(json.dumps(marker))


@SETTINGS
@given(names=st.lists(HOSTILE_NAMES, min_size=1, max_size=3))
def test_a_forged_marker_never_deletes_outside_the_artifact(tmp_path_factory, names):
    sandbox = tmp_path_factory.mktemp("sandbox")
    for victim in ("victim.txt", "a/victim.txt", "b.txt"):
        (sandbox / victim).parent.mkdir(parents=True, exist_ok=True)
        (sandbox / victim).write_bytes(b"victim")
    artifact = sandbox / "out" / "model"
    _forged_artifact(artifact, names)
    before = _listing(sandbox, skip=(artifact,))
    try:
        with artifact_writer(artifact, "model") as folder:
            (folder / "params.npz").write_bytes(b"new")
    except (OutputConflictError, UserError) as e:
        assert "\n" not in str(e)
    after = _listing(sandbox, skip=(artifact,))
    # the writer may stage beside the output (a hidden sibling it removes): nothing else may change
    assert {k: v for k, v in after.items() if ".model.partial-" not in k} == before
    with contextlib.suppress(UserError):
        marker = read_marker(artifact, "model")
        assert all(not _escapes(artifact, name) for name in marker["files"])


@SETTINGS
@given(names=st.lists(HOSTILE_NAMES, min_size=1, max_size=3))
def test_readers_refuse_a_marker_naming_anything_outside(tmp_path_factory, names):
    sandbox = tmp_path_factory.mktemp("sandbox")
    (sandbox / "victim.txt").write_bytes(b"victim")
    artifact = sandbox / "model"
    _forged_artifact(artifact, names)
    try:
        marker = read_marker(artifact, "model")
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert all(not _escapes(artifact, name) for name in marker["files"]), names


def test_a_file_whose_bytes_changed_but_not_its_size_is_refused(tmp_path):
    artifact = tmp_path / "model"
    artifact.mkdir()
    (artifact / "params.npz").write_bytes(b"abcd")
    commit(artifact, "model")
    (artifact / "params.npz").write_bytes(b"abce")
    with pytest.raises(UserError, match="does not match the sha256"):
        read_marker(artifact, "model")


def test_publish_refuses_a_forged_model_and_leaves_the_champion(tmp_path):
    from components.publish import publish_model

    (tmp_path / "victim.txt").write_bytes(b"victim")
    model = tmp_path / "model"
    _forged_artifact(model, ["../victim.txt"])
    published = tmp_path / "published"
    with pytest.raises(Exception) as refused:
        publish_model(model, str(published), 0.99, 0.1)
    assert "resolves outside" in str(refused.value) or "'..'" in str(refused.value)
    assert not published.exists()


# -- the step CLIs: a location that looks remote is never a local folder ---------------------------------------------

def _run_main(main, argv: "list[str]", cwd: Path) -> "tuple[int, str]":
    """A step CLI's ``main`` in this process (its refusals come before any heavy work), in ``cwd``."""
    err = io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    finally:
        os.chdir(previous)
    return code, err.getvalue()


BAD_LOCATIONS = st.one_of(
    st.sampled_from(["gs://", "s3://", "gs:/bucket", "gs://Bucket/x", "gs://b/x", "gs://bucket/../x", "gs://bucket//x",
                     "gs://goog-bucket/x", "gs://192.168.1.1/x", "gcs://bucket/x", "file:///tmp/x", "http://h/x",
                     "s3://bucket..name/x", "s3://xn--bucket/x", "minio:/x", "projects/p/locations//models/m"]),
    URIS.filter(lambda u: _is_refused(u)),
)


def _is_refused(uri: str) -> bool:
    try:
        locations.check_location(uri)
        return False
    except UserError:
        return True


def _step_cases(sandbox: Path, bad: str) -> "list[tuple[object, list[str]]]":
    from components import evaluate, ingest, publish, train

    missing = str(sandbox / "no-such-dataset")
    return [
        (ingest.main, ["--output", bad]),
        (ingest.main, ["--output", "o", "--source", bad]),
        (train.main, ["--dataset", missing, "--model", bad]),
        (train.main, ["--dataset", missing, "--model", "m", "--checkpoint-dir", bad]),
        (train.main, ["--dataset", missing, "--model", "m", "--tensorboard", bad]),
        (train.main, ["--dataset", missing, "--model", "m", "--metrics", bad]),
        (evaluate.main, ["--model", "m", "--dataset", missing, "--metrics", bad]),
        (evaluate.main, ["--model", "m", "--dataset", missing, "--publish-uri", bad]),
        (publish.main, ["--model", "m", "--publish-uri", bad, "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1"]),
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=BAD_LOCATIONS)
def test_steps_refuse_a_malformed_location_before_any_work(tmp_path_factory, bad):
    sandbox = tmp_path_factory.mktemp("cwd")
    (sandbox / "keep.txt").write_text("user's")
    before = _listing(sandbox)
    for main, argv in _step_cases(sandbox, bad):
        code, err = _run_main(main, argv, sandbox)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert _listing(sandbox) == before, (argv, sorted(set(_listing(sandbox)) ^ set(before)))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(run_id=HOSTILE_NAMES.filter(lambda r: r != ""))
def test_train_refuses_a_run_id_that_is_not_one_name(tmp_path_factory, run_id):
    from components import train

    # a parent of its own: the session's base folder holds every other test's files, too many to list each time
    parent = tmp_path_factory.mktemp("run-id")
    sandbox = parent / "cwd"
    sandbox.mkdir()
    before = _listing(parent)
    try:
        locations.check_segment(run_id, "--run-id")
        return  # a valid run id: not this test's case
    except UserError:
        pass
    code, err = _run_main(train.main, ["--dataset", "d", "--model", "m", "--checkpoint-root", str(sandbox),
                                       f"--run-id={run_id}"], sandbox)
    assert code == 2 and err.strip().startswith("error: --run-id") and len(err.strip().splitlines()) == 1, err
    assert _listing(parent) == before


# -- two writers at once ---------------------------------------------------------------------------------------------

def _write_slowly(output: Path, tag: str, results: dict, barrier: threading.Barrier) -> None:
    barrier.wait()
    try:
        with artifact_writer(output, "dataset") as folder:
            for i in range(5):
                (folder / f"part-{i}").write_text(tag)
                time.sleep(0.002)
        results[tag] = "wrote"
    except OutputConflictError as e:
        results[tag] = str(e)


@pytest.mark.parametrize("replace", [False, True], ids=["new", "replace"])
def test_two_writers_one_output_one_wins_whole(tmp_path, replace):
    """Many rounds of two writers racing into one output: one is refused in one line, the artifact is whole."""
    wins = 0
    for round_ in range(60):
        output = tmp_path / f"round-{round_}" / "dataset"
        if replace:
            with artifact_writer(output, "dataset") as folder:
                (folder / "old").write_text("old")
        results: dict = {}
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=_write_slowly, args=(output, tag, results, barrier)) for tag in "AB"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [tag for tag, result in results.items() if result == "wrote"]
        assert len(winners) >= 1, results  # both may win one after the other; never both at once
        for tag, result in results.items():
            if result != "wrote":
                assert "another run is writing" in result and "\n" not in result, result
        marker = read_marker(output, "dataset")
        contents = {(output / name).read_text() for name in marker["files"]}
        assert len(contents) == 1 and contents <= {"A", "B"}, contents  # never a mix of both writers
        assert sorted(marker["files"]) == [f"part-{i}" for i in range(5)]
        assert not (output / WRITING).exists()
        assert not [p for p in output.parent.iterdir() if p.name != "dataset"]  # no staging folder left
        wins += len(winners) == 1
    assert wins > 0  # the race did happen at least once


def test_two_ingest_processes_into_one_output(mnist_data_dir, tmp_path):
    """Real processes: two ingests of one new output; one refused (one line) or both in turn, never a mixed dataset."""
    import subprocess
    import sys

    from conftest import ROOT

    output = tmp_path / "dataset"
    argv = [sys.executable, "-m", "components.ingest", "--output", str(output), "--tfds-data-dir", mnist_data_dir,
            "--train-split", "train[:2000]", "--test-split", "test[:200]", "--records-per-shard", "100",
            "--no-progress"]
    procs = [subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, err in results:
        if code == 2:
            assert err.strip().splitlines()[-1].startswith("error: another run is writing"), err[-500:]
    from mlp_core.data.artifact import load_metadata, verify_shards

    metadata = load_metadata(output)
    verify_shards(output, metadata, "train")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
