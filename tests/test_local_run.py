"""``python pipeline.py run`` as a person sees it: quiet, resumable, its runs listed and removed.

Quick: the console's routing of kfp.local's lines, the step's line marker, ``runs`` and ``--resume``'s refusals on
run folders made by ``commands.local_runs`` itself. Slow: whole runs on all of MNIST, one interrupted (SIGINT to the
parent alone, as ``kill -INT`` sends it) and resumed, its model bit-identical to an uninterrupted run's.
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

# ---- the console (quick)


def _console(tmp_path, verbose=False):
    from commands.local import Console

    out, err = io.StringIO(), io.StringIO()
    return Console(tmp_path / "pipeline.log", verbose, out, err), out, err


def _ingest_fails(console):
    """What kfp.local 2.17 prints and logs for a step that fails: its records (inside its own logger context, as
    task_dispatcher.py logs them) and the step's output (its lines indented, printed)."""
    import logging

    from kfp.local import logging_utils

    with console.routed():
        with logging_utils.local_logger_context():
            logging.info("Running pipeline: \x1b[95m'jax-mlp-pipeline'\x1b[0m")
            print("-" * 80)
        with logging_utils.local_logger_context():
            logging.info("Executing task \x1b[96m'ingest'\x1b[0m")
            logging.info("Streamed logs:\n")
            with logging_utils.indented_print():
                for line in ["[KFP Executor 2026-11-30 03:48:05,357 INFO]: Got executor_input:", "{",
                             '    "inputs": {}', "}", "\x1eread 60000 train examples",
                             "Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
                             "    raise UserError('x')",
                             "mlp_core.errors.UserError: cannot read mnist train: a shard is damaged"]:
                    print(line)
                print("\n")
            logging.info("Task \x1b[96m'ingest'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m")
    console.close()


def test_the_terminal_gets_a_line_per_task_the_steps_lines_and_the_failure_the_log_everything(tmp_path):
    console, out, err = _console(tmp_path)
    _ingest_fails(console)
    assert out.getvalue() == "ingest\n  read 60000 train examples\n"
    assert err.getvalue() == "ingest failed: UserError: cannot read mnist train: a shard is damaged\n"
    log = (tmp_path / "pipeline.log").read_text()
    assert "Got executor_input" in log and "Executing task 'ingest'" in log and "    read 60000 train examples" in log
    assert "finished with status FAILURE" in log
    assert "\x1b" not in log and "\x1e" not in log


def test_verbose_shows_every_line_without_colours_when_not_a_terminal(tmp_path):
    console, out, _ = _console(tmp_path, verbose=True)
    _ingest_fails(console)
    shown = out.getvalue()
    assert "Got executor_input" in shown and "Executing task 'ingest'" in shown and "    read 60000" in shown
    assert "\x1b" not in shown and "\x1e" not in shown


def test_the_console_is_routed_for_the_run_only(tmp_path):
    import logging

    root = logging.getLogger()
    before = sys.stdout, sys.stderr, root.handlers[:], root.level, root.filters[:]
    console, _, _ = _console(tmp_path)
    _ingest_fails(console)
    assert (sys.stdout, sys.stderr, root.handlers, root.level, root.filters) == before


def test_a_step_error_line_is_preferred_to_its_traceback():
    from commands.local import error_of

    assert error_of(["Traceback (most recent call last):", '  File "a"', "ValueError: x", "error: the one line"]) == \
        "the one line"
    assert error_of(["Traceback (most recent call last):", '  File "a"', "  x", "KeyError: 'k'"]) == "KeyError: 'k'"
    assert error_of(["something", "last words"]) == "last words"


def test_a_cache_hit_is_one_line(tmp_path):
    import logging

    console, out, _ = _console(tmp_path)
    with console.routed():  # kfp.local logs it outside its logger context: our handler writes it to the log
        logging.info("Task validate cache hit (key=c24140e91bb3); skipping execution.")
    console.close()
    assert out.getvalue() == "validate: reused (done in an earlier attempt of this run)\n"
    assert "Task validate cache hit" in (tmp_path / "pipeline.log").read_text()


@pytest.mark.parametrize("env", [{"JAX_MLP_CONSOLE": "1"}, {}])
def test_a_step_marks_its_lines_only_inside_pipeline_run(env):
    """Importing ``components`` marks what the step prints; a logging handler made before keeps the bare stream."""
    code = ("import logging, sys; logging.basicConfig(stream=sys.stdout, format='%(message)s', level=logging.INFO)\n"
            "import components\nprint('a person reads this'); logging.info('a log record')")
    environ = {k: v for k, v in os.environ.items() if k != "JAX_MLP_CONSOLE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**environ, **env}, check=True)
    mark = "\x1e" if env else ""
    assert result.stdout == f"{mark}a person reads this\na log record\n"


def test_marked_stream_marks_each_line_of_a_write():
    from components._console import MarkedStream

    buffer = io.StringIO()
    stream = MarkedStream(buffer)
    stream.write("one\ntwo")
    stream.write(" more\n\nthree\n")
    assert buffer.getvalue() == "\x1eone\n\x1etwo more\n\n\x1ethree\n"


def test_every_step_is_cached_only_in_kfp_local():
    from platforms.options import ClusterOptions
    from mlp_core.errors import UserError

    with pytest.raises(UserError, match="cache_every_step is for kfp.local"):
        ClusterOptions(target="kfp", cache_every_step=True)


def test_the_run_identity_is_ours_for_the_run_only():
    from kfp.local import executor_input_utils, placeholder_utils

    from commands.local import run_identity

    with run_identity("jax-mlp-pipeline-x", "the-run-id"):
        assert executor_input_utils.get_local_pipeline_resource_name("jax-mlp-pipeline") == "jax-mlp-pipeline-x"
        assert placeholder_utils.make_random_id() == "the-run-id"  # the pipeline's job id: the first drawn
        assert placeholder_utils.make_random_id() != "the-run-id"  # a task's id
    assert executor_input_utils.get_local_pipeline_resource_name("p").startswith("p-20")


# ---- runs and --resume on run folders (quick)


def _make_run(root: Path, status: str, parameters: dict, **extra) -> Path:
    from commands import local_runs

    folder, fd = local_runs.create(root, "jax-mlp-pipeline", {"parameters": parameters, "runner": "subprocess",
                                                              "image": "jax-mlp-pipeline:0.1.0", "gpus": False})
    os.close(fd)
    record = local_runs.read(folder)
    record.update(status=status, **extra)
    local_runs.write(folder, record)
    return folder


@pytest.fixture
def root(tmp_path):
    """A pipeline root with a finished run, an interrupted one, a running one, and a folder that is not a run."""
    from commands import local_runs

    root = tmp_path / "runs"
    root.mkdir()
    finished = _make_run(root, "finished", {"epochs": 3}, test_accuracy=0.947, published="20261130T011708Z-168a")
    interrupted = _make_run(root, "running", {"epochs": 3, "seed": 1})  # its process was killed: no lock held
    running = _make_run(root, "running", {})
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("not a run")
    fd = local_runs.lock(running)  # as a live pipeline.py run holds it
    yield {"root": root, "finished": finished, "interrupted": interrupted, "running": running}
    os.close(fd)


def _one_error_line(result, text: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert text in result.stderr, result.stderr


def test_runs_lists_the_runs_it_made(root):
    listing = run_cli("pipeline.py", "runs", "--pipeline-root", str(root["root"])).stdout.splitlines()
    assert listing[0].split() == ["RUN", "STARTED", "STATUS", "TEST", "ACC", "PUBLISHED", "PARAMETERS"]
    rows = {line.split()[0]: line for line in listing[1:]}
    assert sorted(rows) == sorted(root[k].name for k in ("finished", "interrupted", "running"))  # not "mine"
    assert rows[root["finished"].name].split()[3:] == ["finished", "0.9470", "20261130T011708Z-168a", "epochs=3"]
    assert rows[root["interrupted"].name].split()[3:] == ["interrupted", "-", "-", "epochs=3", "seed=1"]
    assert rows[root["running"].name].split()[3:] == ["running", "-", "-", "(defaults)"]


@pytest.mark.parametrize(("which", "message"), [
    ("mine", "has no run.json, so pipeline.py run did not make it; left alone"),
    ("running", "the run is running now; stop it first"),
    ("elsewhere", "not a run folder directly under --pipeline-root"),
])
def test_runs_remove_refuses_what_it_did_not_make_or_what_runs(root, tmp_path, which, message):
    name = {"mine": "mine", "running": root["running"].name, "elsewhere": str(tmp_path)}[which]
    before = sorted(p.name for p in root["root"].iterdir())
    # one refused name: nothing removed, not even the finished run named first
    r = run_cli("pipeline.py", "runs", "--pipeline-root", str(root["root"]), "--remove", root["finished"].name, name,
                check=False)
    _one_error_line(r, message)
    assert sorted(p.name for p in root["root"].iterdir()) == before


def test_runs_remove_and_keep(root):
    r = run_cli("pipeline.py", "runs", "--pipeline-root", str(root["root"]), "--remove", root["finished"].name)
    assert r.stdout.strip() == f"removed {root['finished']}" and not root["finished"].exists()
    r = run_cli("pipeline.py", "runs", "--pipeline-root", str(root["root"]), "--keep", "0")
    assert r.stdout.strip() == f"removed {root['interrupted']}"  # the running one and "mine" stay
    assert sorted(p.name for p in root["root"].iterdir()) == sorted(["mine", root["running"].name])


@pytest.mark.parametrize(("args", "message"), [
    (["--resume", "nosuch"], "--resume nosuch: no run nosuch under"),
    (["--resume", "mine"], "has no run.json, so it is not a run of pipeline.py run"),
    (["--resume", "{finished}"], "the run finished; there is nothing to resume"),
    (["--resume", "{running}"], "the run is running now"),
    (["--resume", "{interrupted}", "--epochs", "5"], "--epochs 5: run {interrupted} was started with 3; a resumed run "
                                                     "keeps its parameters"),
    (["--resume", "{interrupted}", "--seed", "0"], "--seed 0: run {interrupted} was started with 1"),
    (["--resume", "--runner", "docker"], "--runner docker: run {interrupted} ran with 'subprocess'"),
    (["--resume", "/tmp/{interrupted}"], "not a run folder directly under --pipeline-root"),
])
def test_resume_refuses_in_one_line_before_any_work(root, args, message):
    names = {k: root[k].name for k in ("finished", "running", "interrupted")}
    before = {p: p.stat().st_mtime_ns for p in root["root"].rglob("*")}
    r = run_cli("pipeline.py", "run", "--pipeline-root", str(root["root"]), *[a.format(**names) for a in args],
                check=False)
    _one_error_line(r, message.format(**names))
    assert {p: p.stat().st_mtime_ns for p in root["root"].rglob("*")} == before


def test_resume_with_nothing_to_resume(tmp_path):
    r = run_cli("pipeline.py", "run", "--pipeline-root", str(tmp_path / "none"), "--resume", check=False)
    _one_error_line(r, "does not exist, so it has no run to resume")
    assert not (tmp_path / "none").exists()
    (tmp_path / "runs").mkdir()
    _make_run(tmp_path / "runs", "finished", {})
    r = run_cli("pipeline.py", "run", "--pipeline-root", str(tmp_path / "runs"), "--resume", check=False)
    _one_error_line(r, "no interrupted or failed run under")


@pytest.mark.parametrize(("parameters", "message"), [
    ({"epochs": 0}, "must be a positive integer, got 0"),
    ({"epochs": 3, "nosuch": 1}, "its run.json names parameters the pipeline does not have: nosuch"),
])
def test_resume_checks_the_recorded_parameters_as_given_ones(tmp_path, parameters, message):
    """run.json is input: an edited one is refused in one line, as the same values on the command line would be."""
    _make_run(tmp_path, "interrupted", parameters)
    r = run_cli("pipeline.py", "run", "--pipeline-root", str(tmp_path), "--resume", check=False)
    _one_error_line(r, message)


def test_the_docker_runner_without_an_engine_is_one_line_and_leaves_nothing(tmp_path):
    r = run_cli("pipeline.py", "run", "--runner", "docker", "--pipeline-root", str(tmp_path / "runs"),
                env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}, check=False)
    _one_error_line(r, f"--runner docker: no Docker engine answers at unix://{tmp_path}/no-engine.sock; start Docker")
    assert not (tmp_path / "runs").exists()


# ---- whole runs (slow)

EPOCHS = ["--epochs", "3"]


def _run_args(root: Path, mnist_data_dir: str, *more: str) -> list[str]:
    return [sys.executable, "pipeline.py", "run", *EPOCHS, "--tfds-data-dir", mnist_data_dir, "--pipeline-root",
            str(root), *more]


def _params_bytes(model: Path) -> dict[str, bytes]:
    import numpy as np

    with np.load(model / "params.npz", allow_pickle=False) as npz:
        return {k: npz[k].tobytes() for k in npz.files}


def _only_run(root: Path) -> Path:
    (folder,) = [p for p in root.iterdir() if (p / "run.json").is_file()]
    return folder


@pytest.fixture(scope="module")
def uninterrupted(mnist_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted") / "runs"
    result = subprocess.run(_run_args(root, mnist_data_dir), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, _only_run(root)


@pytest.mark.slow
def test_a_run_prints_a_few_lines_and_logs_everything(uninterrupted):
    result, folder = uninterrupted
    lines = result.stdout.splitlines()
    assert len(lines) <= 40, result.stdout  # before: ~520 lines for one epoch
    assert result.stderr == ""
    assert lines[0] == f"run {folder.name} under {folder.parent} (its whole log: {folder / 'pipeline.log'})"
    assert [line for line in lines if line and not line.startswith((" ", "test accuracy", "pipeline "))] == [
        lines[0], "ingest", "new-data", "validate", "untuned", "train", "evaluate"]
    assert "  epoch 3/3: " in result.stdout and "  not blessed: test accuracy" in result.stdout
    assert "\x1b" not in result.stdout and "executor_input" not in result.stdout and "INFO" not in result.stdout
    log = (folder / "pipeline.log").read_text()
    assert "Got executor_input" in log and "Executing task 'train'" in log and "Task 'train' outputs:" in log
    assert "\x1b" not in log and "\x1e" not in log
    assert f"  log        {folder / 'pipeline.log'}" in lines
    for label, task, name in (("report", "evaluate", "report.html"), ("validation", "validate", "validation-report.html")):
        page = folder / name  # a copy named .html, not a link: a browser follows a link and shows the source
        assert f"  {label:<10} {page.as_uri()}" in lines and not page.is_symlink()
        assert page.read_bytes() == (folder / task / "report").read_bytes()
    assert "  published  nothing: no --publish-uri" in lines
    assert re.fullmatch(r"test accuracy 0\.9\d{3}, test loss 0\.0\d{3} \(the notebook's loss: .*\)", lines[-1])
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "finished" and record["parameters"]["epochs"] == 3 and record["test_accuracy"] > 0.9


def _descendants(pid: int) -> list:
    import psutil

    return psutil.Process(pid).children(recursive=True)


def _gone(process) -> bool:
    import psutil

    try:
        return process.status() == psutil.STATUS_ZOMBIE  # reaped by whoever adopted it, or about to be
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_sigint_to_the_parent_stops_every_step_and_resume_finishes_bit_identical(mnist_data_dir, uninterrupted,
                                                                                    tmp_path):
    root = tmp_path / "runs"
    proc = subprocess.Popen(_run_args(root, mnist_data_dir), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("  epoch 1/3"):  # the epoch-1 checkpoint is written before this line
            children = _descendants(proc.pid)
            os.kill(proc.pid, signal.SIGINT)  # the parent alone, as kill -INT does: not its process group
            break
    rest, errors = proc.communicate(timeout=120)
    assert proc.returncode == 130, errors
    folder = _only_run(root)
    assert errors == f"interrupted: resume with python pipeline.py run --resume {folder.name} --pipeline-root {root}\n"
    assert "Traceback" not in "".join(seen) + rest
    assert children and all(_gone(child) for child in children), [c.pid for c in children if not _gone(c)]
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"
    listed = run_cli("pipeline.py", "runs", "--pipeline-root", str(root)).stdout
    assert f"{folder.name} " in listed and " interrupted " in listed
    done = {task: (folder / task / "executor_output.json").stat().st_mtime_ns for task in ("ingest", "new-data",
                                                                                             "validate")}

    resumed = subprocess.run([sys.executable, "pipeline.py", "run", "--resume", "--pipeline-root", str(root)],
                             cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout
    assert out.startswith(f"resuming run {folder.name} ")
    for task in done:
        assert f"{task}: reused (done in an earlier attempt of this run)\n" in out
        assert (folder / task / "executor_output.json").stat().st_mtime_ns == done[task]  # not executed again
    assert "(1 epoch(s) done)" in out and "epoch 1/3" not in out and "  epoch 3/3: " in out
    second = (folder / "pipeline.log").read_text().split(f"resuming run {folder.name} ", 1)[1]
    assert "Executing task 'ingest'" not in second and "Executing task 'train'" in second
    assert _params_bytes(folder / "train" / "model") == _params_bytes(uninterrupted[1] / "train" / "model")
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "finished" and record["attempts"] == 2


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_the_run_in_one_line(mnist_data_dir, tmp_path):
    """A terminal's Ctrl-C signals the whole process group: the steps get SIGINT too, and print no traceback."""
    from conftest import SMALL_TEST, SMALL_TRAIN

    root = tmp_path / "runs"
    proc = subprocess.Popen(
        _run_args(root, mnist_data_dir, "--train-split", SMALL_TRAIN, "--test-split", SMALL_TEST, "--epochs", "200"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in proc.stdout:
        if line.startswith("  epoch 2/200"):
            children = _descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest, errors = proc.communicate(timeout=120)
    assert proc.returncode == 130 and errors.startswith("interrupted: resume with ") and errors.count("\n") == 1, errors
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert all(_gone(child) for child in children)
    assert json.loads((_only_run(root) / "run.json").read_text())["status"] == "interrupted"
