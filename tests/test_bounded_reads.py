"""Generated cases: every reader of a user's or an artifact's file against what is not a regular file or is too big;
planted links where a program writes; writers killed mid-write and the next writer; values taken from files.

Each reader must answer within seconds with one short line (or, where a broken file is skipped, with nothing),
never block on a FIFO, never read a device or a file past its cap, never write through a link out of its location.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from artifacts import outputs, storage
from mlp_core.errors import UserError
from artifacts.outputs import COMPLETE, WRITING, OutputConflictError, artifact_writer

ROOT = Path(__file__).resolve().parents[1]
VERSION = "20261126T184620Z-3f9a1c2b7d4e"
KINDS = ("fifo", "zero", "socket", "folder", "loop", "oversize")


def _plant(path: Path, kind: str, cap: int) -> None:
    """Make ``path`` a ``kind`` of thing that is not a readable regular file under ``cap`` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "socket":  # bound at a short name (a socket path has at most 107 bytes), then moved in place
        short = Path(tempfile.mkdtemp(dir="/tmp")) / "s"
        with socket.socket(socket.AF_UNIX) as listening:
            listening.bind(str(short))
        short.rename(path)
        short.parent.rmdir()
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name)
    else:  # a sparse file one byte over the cap: nothing is written, its size is what counts
        with open(path, "wb") as f:
            f.truncate(cap + 1)


def _finished(call, seconds: float = 20.0):
    """``call()``'s result or exception, from a thread that must end within ``seconds`` (a FIFO would block it)."""
    answer: dict = {}

    def run():
        try:
            answer["value"] = call()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            answer["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still reading after {seconds} s"
    return answer


def _reader_cases():
    """``(name, cap, place, read, skips)``: ``place(tmp)`` gives the path to plant; ``read(tmp)`` reads through the
    program's own reader; ``skips``: the reader passes over a broken file (returns None) instead of refusing."""
    from commands import local_runs
    from components.track import _read
    from components.new_data import _lost_before, candidate_key
    from components.publish import read_champion, read_evaluation
    from mlp_core.data.statistics import read_statistics
    from mlp_core.data.validation import read_schema
    from platforms.kubeflow.pipelines import _read_secret
    from artifacts.schemas import TRAIN_METRICS

    def in_pub(*names):
        return lambda tmp: Path(tmp, "pub", *names)

    def latest_then(tmp):
        (tmp / "pub" / "LATEST").write_text(VERSION + "\n")
        return read_champion(str(tmp / "pub"))

    def checkpoint(tmp):
        from mlp_core.checkpoint import Checkpoints

        return Checkpoints(str(tmp / "ck"), {"run": 1}).latest((4, 3), log=lambda line: None)

    def executor_output(tmp):
        from commands.local import LocalRun

        return LocalRun(tmp / "run").outputs("train")

    key = "run-" + __import__("hashlib").sha256(b'{"run":1}').hexdigest()[:16]
    return [
        ("storage.read_bytes", storage.RECORD, lambda tmp: tmp / "f", lambda tmp: storage.read_bytes(tmp / "f", storage.RECORD), False),
        ("validate --schema", storage.SCHEMA, lambda tmp: tmp / "schema.pbtxt", lambda tmp: read_schema(tmp / "schema.pbtxt"), False),
        ("validate --baseline-statistics", storage.STATISTICS, lambda tmp: tmp / "stats.pb",
         lambda tmp: read_statistics(tmp / "stats.pb"), False),
        ("publish --test-metrics", storage.METRICS, lambda tmp: tmp / "m.json", lambda tmp: read_evaluation(tmp / "m.json"), False),
        ("track --train-metrics", storage.METRICS, lambda tmp: tmp / "m.json", lambda tmp: _read(str(tmp / "m.json"), TRAIN_METRICS), False),
        ("run.json", storage.RUN_JSON, lambda tmp: tmp / "runs" / "r1" / "run.json",
         lambda tmp: local_runs.read(tmp / "runs" / "r1"), False),
        ("publish LATEST", storage.RECORD, in_pub("LATEST"), lambda tmp: read_champion(str(tmp / "pub")), False),
        ("publish manifest.json", storage.MANIFEST, in_pub(VERSION, "manifest.json"), latest_then, False),
        ("candidate record", storage.RECORD, in_pub("candidates", candidate_key({}, {}) + ".json"),
         lambda tmp: _lost_before(str(tmp / "pub"), {}, {}, VERSION), True),
        ("artifact _COMPLETE.json", storage.MANIFEST, lambda tmp: tmp / "ds" / COMPLETE,
         lambda tmp: outputs.read_marker(tmp / "ds", "dataset"), False),
        ("checkpoint state.json", storage.METRICS, lambda tmp: tmp / "ck" / key / "ckpt-000001" / "state.json",
         checkpoint, True),
        ("kfp.local executor_output.json", storage.METRICS, lambda tmp: tmp / "run" / "train" / "executor_output.json",
         executor_output, True),
        ("--cookie-file", storage.RECORD, lambda tmp: tmp / "cookie", lambda tmp: _read_secret(str(tmp / "cookie"), "--cookie-file"), False),
    ]


READERS = _reader_cases()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", READERS, ids=[case[0] for case in READERS])
def test_every_reader_refuses_what_is_not_a_regular_file_or_too_big(tmp_path, case, kind, monkeypatch):
    name, cap, place, read, skips = case
    path = place(tmp_path)
    _plant(path, kind, cap)
    answer = _finished(lambda: read(tmp_path))
    if skips:
        assert answer.get("value") is None and "error" not in answer, answer
        return
    error = answer.get("error")
    assert isinstance(error, (OSError, ValueError)), f"{name} / {kind}: {answer}"
    from components._cli import error_line, expected_errors

    assert isinstance(error, (*expected_errors(), UserError)), repr(error)
    line = error_line(error)
    assert "\n" not in str(error).strip() and len(line) < 300, line
    if kind == "oversize":
        assert "more than" in line, line


def test_a_bounded_read_never_reads_more_than_its_cap_of_a_growing_file(tmp_path):
    """The size is checked on the open file and the read stops at cap + 1, whatever the file says after."""
    path = tmp_path / "grows"
    path.write_bytes(b"x" * 10)
    real_fstat = os.fstat

    def fstat_before_it_grew(fd):
        info = real_fstat(fd)
        with open(path, "ab") as f:
            f.write(b"y" * 100)
        return info

    import unittest.mock as mock

    with mock.patch.object(os, "fstat", fstat_before_it_grew), pytest.raises(storage.StorageError, match="more than"):
        storage.read_bytes(path, 50)


# ---- writes never follow a link planted out of the named location


def _snapshot(folder: Path) -> dict:
    """Every name under ``folder`` with its bytes (a link: its target), to compare before and after."""
    found = {}
    for p in sorted(folder.rglob("*")):
        found[p.relative_to(folder).as_posix()] = ("link", os.readlink(p)) if p.is_symlink() else \
            (p.read_bytes() if p.is_file() else "folder")
    return found


@pytest.mark.parametrize("planted", ["candidates", "LATEST.lock", "LATEST"])
def test_a_link_planted_in_a_publish_location_is_never_written_through(tmp_path, planted):
    from components.new_data import record_candidate
    from components.publish import read_champion

    pub, outside = tmp_path / "pub", tmp_path / "outside"
    pub.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("keep")
    name = {"candidates": "candidates", "LATEST.lock": ".LATEST.lock", "LATEST": "LATEST"}[planted]
    (pub / name).symlink_to(outside if planted == "candidates" else outside / "victim")
    with pytest.raises((UserError, storage.StorageError)) as refused:
        read_champion(str(pub))  # evaluate, new_data and publish all read the champion before any work
    assert "resolves outside" in str(refused.value)
    if planted == "candidates":
        with pytest.raises(UserError):
            record_candidate(str(pub), {}, {}, {"champion_version": VERSION, "test_accuracy": 0.5,
                                                "champion_test_accuracy": 0.9, "reason": "worse"})
    assert _snapshot(outside) == {"victim": b"keep"}


@pytest.mark.parametrize("planted", ["run", "ckpt"])
def test_a_link_planted_in_a_checkpoint_location_is_never_written_through(tmp_path, planted):
    import numpy as np

    from mlp_core.checkpoint import Checkpoints

    location, outside = tmp_path / "ck", tmp_path / "outside"
    outside.mkdir()
    checkpoints = Checkpoints(str(location), {"run": 1}) if planted == "ckpt" else None
    key = "run-" + __import__("hashlib").sha256(b'{"run":1}').hexdigest()[:16]
    link = location / key / "ckpt-000001" if planted == "ckpt" else location / key
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    with pytest.raises(UserError, match="resolves outside"):
        checkpoints = checkpoints or Checkpoints(str(location), {"run": 1})
        checkpoints.save(1, [(np.zeros((4, 3), np.float32), np.zeros(3, np.float32))], [])
    assert _snapshot(outside) == {}


def test_a_writing_marker_linked_out_of_an_output_is_never_written_through(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.write_bytes(b"")  # empty: what a writer killed right after creating its lock file leaves
    (out / WRITING).symlink_to(victim)
    with pytest.raises(OutputConflictError):
        with artifact_writer(out, "dataset") as folder:
            (folder / "a").write_text("a")
    assert victim.read_bytes() == b"" and _snapshot(out) == {WRITING: ("link", str(victim))}


# ---- writers killed at every point; the next writer that takes the lock removes what they staged

KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from artifacts.outputs import artifact_writer
out, point = Path(sys.argv[1]), sys.argv[2]
if point == "move":
    real = os.replace
    def replace_then_die(a, b):
        real(a, b)
        os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace_then_die
with artifact_writer(out, "dataset") as folder:
    if point == "staged":
        os.kill(os.getpid(), signal.SIGKILL)
    (folder / "a.bin").write_bytes(b"new a")
    (folder / "b.bin").write_bytes(b"new b")
    if point == "written":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("point", ["staged", "written", "move"])
def test_a_writer_killed_while_replacing_leaves_staging_the_next_writer_removes(tmp_path, point):
    out = tmp_path / "out"
    with artifact_writer(out, "dataset") as folder:
        (folder / "a.bin").write_bytes(b"old a")
    user_folder = tmp_path / ".out.partial-mine"  # not a name tempfile gives: never ours to remove
    user_folder.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out), point], cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    staged = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.partial-") and p != user_folder]
    assert staged, "the kill left no staging folder: the case tests nothing"
    with artifact_writer(out, "dataset") as folder:
        (folder / "a.bin").write_bytes(b"third a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.partial-mine", "out"]
    assert outputs.read_marker(out, "dataset")["files"].keys() == {"a.bin"}


KILLED_CHECKPOINT = """
import os, signal, sys
import numpy as np
from mlp_core.checkpoint import Checkpoints
real = os.replace
calls = []
def replace_or_die(a, b):
    calls.append(b)
    if len(calls) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(a, b)
os.replace = replace_or_die
Checkpoints(sys.argv[1], {"run": 1}).save(1, [(np.zeros((4, 3), np.float32), np.zeros(3, np.float32))], [])
"""


@pytest.mark.parametrize("write", [1, 2], ids=["params", "state"])
def test_a_checkpoint_write_killed_before_its_rename_leaves_nothing_after_the_next_run(tmp_path, write):
    import numpy as np

    from mlp_core.checkpoint import Checkpoints

    location = tmp_path / "ck"
    killed = subprocess.run([sys.executable, "-c", KILLED_CHECKPOINT, str(location), str(write)], cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    assert any(".partial-" in p.name for p in location.rglob("*")), "no temp file left: the case tests nothing"
    checkpoints = Checkpoints(str(location), {"run": 1})
    checkpoints.save(1, [(np.zeros((4, 3), np.float32), np.zeros(3, np.float32))], [])
    checkpoints.remove()
    assert list(location.iterdir()) == []


# ---- values taken from files pass the same checks as flags


@pytest.mark.parametrize("version", ["../x", "/etc/passwd", "a/b", "..", VERSION + "/../x", "x" * 500, "1e3", "v1\n"])
def test_a_version_name_is_a_name_wherever_it_comes_from(tmp_path, version):
    from components.publish import check_champion_version, read_evaluation

    with pytest.raises(UserError) as refused:
        check_champion_version(version, "champion_version")
    assert len(str(refused.value)) < 300 and "\n" not in str(refused.value)
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"test_accuracy": 0.9, "test_loss": 0.1, "blessed": True, "reason": "better",
                                   "champion_version": version, "test_set_sha256": "0" * 64, "class_names": ["a"]}))
    with pytest.raises(UserError, match="is not a published version's name"):
        read_evaluation(metrics)


@pytest.mark.parametrize("version", ["", VERSION, "12"])
def test_a_version_name_or_none_is_taken(version):
    from components.publish import check_champion_version

    assert check_champion_version(version, "champion_version") == version


RUN_RECORD = {"format": "jax-mlp-pipeline local run", "name": "r1", "run_id": "id", "status": "failed",
              "parameters": {"epochs": 1}}


@pytest.mark.parametrize(("content", "said"), [
    ("[1, 2, 3", "malformed"),
    ("[" + "1, " * 100000 + "1]", "malformed"),
    (json.dumps({**RUN_RECORD, "parameters": {"epochs": 1e30}}), "gives epochs 1e+30, not an integer"),
    (json.dumps({**RUN_RECORD, "parameters": {"epochs": "3"}}), "gives epochs '3', not an integer"),
    (json.dumps({**RUN_RECORD, "parameters": {"epochs": True}}), "not an integer"),
    (json.dumps({**RUN_RECORD, "parameters": {"hidden_sizes": 5}}), "not a text"),
    (json.dumps({**RUN_RECORD, "parameters": {"no_such": 1}}), "parameters the pipeline does not have: no_such"),
    (json.dumps({**RUN_RECORD, "parameters": {"epochs": 0}}), "must be a positive integer"),
    (json.dumps({**RUN_RECORD, "parameters": {"publish_uri": "gcs://x/y"}}), "'gcs://x/y' is not a location"),
])
def test_a_resumed_run_passes_its_run_json_through_the_flags_checks(tmp_path, content, said):
    from commands.local import plan_run
    from components._cli import error_line, expected_errors

    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "run.json").write_text(content)
    with pytest.raises((*expected_errors(), UserError)) as refused:
        plan_run({}, pipeline_root=tmp_path, resume="r1")
    line = error_line(refused.value)
    assert said in line and len(line) < 300, line


def test_a_run_stores_its_locations_absolute(tmp_path, monkeypatch):
    from commands.local import plan_run

    monkeypatch.chdir(tmp_path)
    plan = plan_run({"publish_uri": "pub", "epochs": 1}, pipeline_root=tmp_path / "runs")
    assert plan["arguments"] == {"publish_uri": str(tmp_path / "pub"), "epochs": 1}


@pytest.mark.parametrize("text", ["[" + ", ".join(["1"] * 5000) + "]", json.dumps("x" * 100000),
                                  json.dumps({"test_accuracy": "y" * 5000})])
def test_a_metrics_file_of_the_wrong_shape_is_refused_with_a_short_excerpt(tmp_path, text):
    from components.publish import read_evaluation

    (tmp_path / "m.json").write_text(text)
    with pytest.raises(UserError) as refused:
        read_evaluation(tmp_path / "m.json")
    assert len(str(refused.value)) < 300, str(refused.value)


def test_a_publish_location_that_is_a_file_is_refused(tmp_path):
    from components.publish import read_champion

    (tmp_path / "pub").write_text("not a folder")
    with pytest.raises(UserError, match="is a file, not a folder"):
        read_champion(str(tmp_path / "pub"))


# ---- outputs apart from everything


@pytest.mark.parametrize("where", ["artifact", "inside", "deep inside", "a link to it"])
def test_a_checkpoint_location_in_an_artifact_is_refused(tmp_path, where):
    other = tmp_path / "other_model"
    other.mkdir()
    (other / COMPLETE).write_text("{}")
    location = {"artifact": other, "inside": other / "ck", "deep inside": other / "a" / "b",
                "a link to it": tmp_path / "ck"}[where]
    if where == "a link to it":
        location.symlink_to(other / "saved")
    with pytest.raises(OutputConflictError, match="the artifact"):
        outputs.check_outside_artifacts(location, "--checkpoint-dir")
    outputs.check_outside_artifacts(tmp_path / "apart", "--checkpoint-dir")


@pytest.mark.parametrize("loop", ["dataset", "shard"])
def test_a_dataset_with_a_symlink_loop_is_one_line(small_dataset, tmp_path, loop):
    import shutil

    from mlp_core.data.artifact import load_metadata, read_split

    copy = tmp_path / "ds"
    if loop == "dataset":
        copy.symlink_to("ds")
    else:
        shutil.copytree(small_dataset, copy)
        shard = next(copy.glob("train-*.tfrecord"))
        shard.unlink()
        shard.symlink_to(shard.name)
    with pytest.raises(UserError) as refused:
        read_split(copy, "train", load_metadata(copy))
    assert "symlink loop" in str(refused.value) or "symbolic links" in str(refused.value), str(refused.value)
    assert "\n" not in str(refused.value)


CRAFTED = {
    "marker naming outside": {COMPLETE: json.dumps({"format": outputs.FORMAT, "kind": "model",
                                                   "files": {"../victim": {"bytes": 1, "sha256": "0"}}}),
                             "params.npz": "old"},
    "marker of another kind": {COMPLETE: json.dumps({"format": outputs.FORMAT, "kind": "dataset", "files": {}}),
                               "params.npz": "old"},
    "writing of another kind": {WRITING: json.dumps({"kind": "dataset"}), "params.npz": "old"},
    "a stray beside a marker": {COMPLETE: json.dumps({"format": outputs.FORMAT, "kind": "model",
                                                     "files": {"params.npz": {"bytes": 3, "sha256": "0"}}}),
                                "params.npz": "old", "notes.txt": "mine"},
    "not JSON": {COMPLETE: "{{{", WRITING: "{{{", "params.npz": "old"},
}


@pytest.mark.parametrize("crafted", CRAFTED)
def test_a_refused_artifact_is_left_byte_identical(tmp_path, crafted):
    out = tmp_path / "model"
    out.mkdir()
    (tmp_path / "victim").write_text("v")
    for name, text in CRAFTED[crafted].items():
        (out / name).write_text(text)
    before = _snapshot(tmp_path)
    with pytest.raises(OutputConflictError):
        with artifact_writer(out, "model") as folder:
            (folder / "params.npz").write_text("new")
    assert _snapshot(tmp_path) == before


def test_track_refuses_a_tensorboard_dir_that_is_a_file_before_any_request(tmp_path, capsys):
    from components import track

    (tmp_path / "events").write_text("a file")
    (tmp_path / "m.json").write_text("{}")
    code = track.main(["--job", "projects/p-123456/locations/us-central1/pipelineJobs/job-1", "--experiment", "mnist-exp",
                       "--train-metrics", str(tmp_path / "m.json"), "--test-metrics", str(tmp_path / "m.json"),
                       "--tensorboard-dir", str(tmp_path / "events")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: --tensorboard-dir {tmp_path / 'events'} is not a folder (of " \
                                              "TensorBoard event files)"


@pytest.mark.parametrize("cron", ["5-1 * * * *", "0 22-2 * * *", "TZ= 0 3 * * *"])
def test_a_cron_kubeflow_would_refuse_is_refused_here(cron):
    from platforms import cron as cron_lib

    with pytest.raises(UserError):
        cron_lib.validate(cron)
