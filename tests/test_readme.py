"""Every command in README.md runs as written.

Each ```sh block of the README is marked on the line before it:

    <!-- run -->            run here, in README order, in one folder (later blocks use what earlier ones wrote)
    <!-- run: fails -->     every line must fail with one `error: ...` line and exit status 2
    <!-- run: kfp-api -->   run against RecordingKfpApi on localhost:8080, the README's --host
    <!-- run: docker -->    run in the project image (tests/test_docker.py's build, tagged as the README names it)
    <!-- not run: why -->   and why not (a registry, a cloud project, the set-up these tests run in)

Where a block's output cannot vary (refusals, the KFP API's answers), it must be the
```text block that follows it in the README, line for line.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
_BLOCK = re.compile(r"(?:<!-- (?P<mark>[^>]*?) -->\n)?```sh\n(?P<code>.*?)```\n(?:\n*```text\n(?P<output>.*?)```)?", re.S)
KINDS = ("run", "run: fails", "run: kfp-api", "run: docker")


def blocks(kinds=KINDS) -> list[tuple[str, str, str | None]]:
    """``(mark, code, the output shown after it)`` of the README's ```sh blocks of ``kinds``."""
    return [(m["mark"], m["code"], m["output"]) for m in _BLOCK.finditer(README.read_text()) if m["mark"] in kinds]


def _shell(code: str, cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"README block failed (exit {result.returncode}):\n{code}\n{result.stderr[-3000:]}")
    return result


def _environment(mnist_data_dir: str) -> dict:
    # The interpreter these tests run with first on PATH: `python` in the README is the one set up.
    return {**os.environ, "TFDS_DATA_DIR": mnist_data_dir, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def _workdir(tmp_path: Path) -> Path:
    """A folder where `python pipeline.py` works as in a clone (the package itself is installed)."""
    (tmp_path / "pipeline.py").symlink_to(ROOT / "pipeline.py")
    return tmp_path


def _same_output(shown: str, printed: str) -> None:
    varying = ("next runs:",)  # dates computed from today
    keep = lambda text: [line for line in text.strip().splitlines() if not line.startswith(varying)]  # noqa: E731
    assert keep(printed) == keep(shown)


def test_every_sh_block_says_whether_and_how_it_runs():
    marks = [m["mark"] for m in _BLOCK.finditer(README.read_text())]
    assert marks and all(m in KINDS or (m or "").startswith("not run: ") for m in marks), marks
    assert sum(m == "run" for m in marks) >= 3 and "run: fails" in marks and "run: kfp-api" in marks


@pytest.mark.slow
def test_readme_commands_run_as_written(mnist_data_dir, tmp_path):
    from kfp_api_stand_in import RecordingKfpApi

    cwd, env = _workdir(tmp_path), _environment(mnist_data_dir)
    try:
        api = RecordingKfpApi(8080).__enter__()
    except OSError as e:  # the README's --host; only a test run beside a real KFP port-forward would hold it
        pytest.fail(f"localhost:8080 is taken ({e}); the README's Kubeflow commands need it")
    try:
        for mark, code, shown in blocks(("run", "run: fails", "run: kfp-api")):
            if mark == "run: fails":
                printed = []
                for line in code.strip().splitlines():
                    result = _shell(line, cwd, env, check=False)
                    assert result.returncode == 2, (line, result.stderr[-2000:])
                    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
                    printed.append(result.stderr.strip())
                _same_output(shown, "\n".join(printed))
                continue
            result = _shell(code, cwd, env)
            if mark == "run: kfp-api":
                _same_output(shown, result.stdout)
    finally:
        api.__exit__(None, None, None)
    assert sum(r["path"] == "/apis/v2beta1/runs" and r["method"] == "POST" for r in api.requests) == 1
    assert (cwd / "published" / "LATEST").exists() and (cwd / "first8.npy").exists()
    assert "test accuracy" in (cwd / "out" / "report.md").read_text()
    assert "process 1 done" in (cwd / "process-1.log").read_text()  # the second process of "More than one machine"
