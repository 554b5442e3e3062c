"""Every command in README.md and the guides under docs/ runs as written.

Each ```sh block is marked on the line before it:

    <!-- run -->               run here, README then the guides in PAGES order, in one folder (later blocks use what
                               earlier ones wrote)
    <!-- run: fails -->        every line must fail with one `error: ...` line and exit status 2
    <!-- run: kfp-api -->      run against RecordingKfpApi on localhost:8080, the guides' --host
    <!-- run: docker -->       run in the project image (tests/test_docker.py's build, tagged as the guide names it)
    <!-- run: retraining -->   the retraining story, run in a folder of its own by tests/test_retraining.py
    <!-- as in: docs/X.md -->  a README excerpt: the same lines are a run block of that guide
    <!-- not run: why -->      and why not (a registry, a cloud project, the set-up these tests run in)

Where a block's output cannot vary (refusals, the KFP API's answers), it must be the ```text block that
follows it, line for line. Where it shows a shuffled run's figures (accuracies, losses, probabilities), each
shown line with figures must be printed, in order, with every figure within FIGURE_TOLERANCE (on small data,
SMALL_DATA_TOLERANCE): the last digit varies by CPU, as XLA's CPU kernels differ by instruction set. And every
shown line but `...` must be one the program prints, numbers and ids aside (a message changed in the code fails).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
GUIDES = ("local", "own-data", "serving", "distributed", "docker", "kubeflow", "schedules", "vertex",
          "tuning")
PAGES = (README, *(ROOT / "docs" / f"{name}.md" for name in GUIDES))  # in the order their commands run
_BLOCK = re.compile(r"(?:<!-- (?P<mark>[^>]*?) -->\n)?```sh\n(?P<code>.*?)```\n(?:\n*```text\n(?P<output>.*?)```)?", re.S)
KINDS = ("run", "run: fails", "run: kfp-api", "run: docker", "run: retraining")
RUN_HERE = ("run", "run: fails", "run: kfp-api")
FIGURE_TOLERANCE = 0.001  # said in the README beside the Quick start's figures (10,000 test images)
SMALL_DATA_TOLERANCE = {"own-data.md": 0.01}  # said there: a test split of 300 to 500 images, one image 0.002-0.0033
_FIGURE = re.compile(r"(accuracy|loss|F1|p=)\s?(\d\.\d{4})\b")


def sh_blocks(pages=PAGES) -> list[re.Match]:
    """Every ```sh block of ``pages`` (README and the guides), in order."""
    return [m for page in pages for m in _BLOCK.finditer(page.read_text())]


def blocks(kinds=KINDS, pages=PAGES) -> list[tuple[str, str, str | None]]:
    """``(mark, code, the output shown after it)`` of the ```sh blocks of ``kinds``."""
    return [(m["mark"], m["code"], m["output"]) for m in sh_blocks(pages) if m["mark"] in kinds]


def _shell(code: str, cwd: Path, env: dict, check: bool = True, merged: bool = False) -> subprocess.CompletedProcess:
    """Run ``code`` with bash; ``merged``: stderr into stdout, in the order a terminal shows them."""
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merged else subprocess.PIPE)
    if check and result.returncode != 0:
        raise AssertionError(f"block failed (exit {result.returncode}):\n{code}\n{result.stdout[-3000:]}"
                             f"\n{(result.stderr or '')[-3000:]}")
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


def same_figures(shown: str, printed: str, tolerance: float = FIGURE_TOLERANCE) -> None:
    """Each shown line with figures is printed, in order, with the same labels and each figure within ``tolerance``."""
    lines = [(line, _FIGURE.findall(line)) for line in printed.splitlines()]
    at = 0
    for want in (line for line in shown.splitlines() if _FIGURE.search(line)):
        figures = _FIGURE.findall(want)
        for at in range(at, len(lines) + 1):
            if at == len(lines):
                raise AssertionError(f"not printed within {tolerance}: {want!r}\nprinted:\n{printed[-4000:]}")
            got = lines[at][1]
            if [label for label, _ in got] == [label for label, _ in figures] and all(
                    abs(float(a) - float(b)) <= tolerance + 1e-9 for (_, a), (_, b) in zip(got, figures)):
                at += 1
                break


def _shape(line: str) -> str:
    """A line with its numbers, ids and lists of numbers made alike: what stays is what the program says."""
    line = re.sub(r"\d[\d,]*\d|\d", "0", re.sub(r"\b[0-9a-f]{12,}\b", "x", line.rstrip()))  # 1,323 as 774
    return re.sub(r"0(?:, 0)+", "0", line)


def same_lines(shown: str, printed: str) -> None:
    """Every shown line (but ``...`` and a path of the writer's machine) is a line printed, numbers and ids aside."""
    said = {_shape(line) for line in printed.splitlines()}
    missing = [line for line in shown.splitlines()
               if line.strip() != "..." and "/home/me/" not in line and _shape(line) not in said]
    assert not missing, f"shown but not printed: {missing}\nprinted:\n{printed[-4000:]}"


def test_every_sh_block_says_whether_and_how_it_runs():
    marks = [m["mark"] for m in sh_blocks()]
    assert all(m in KINDS or (m or "").startswith(("not run: ", "as in: ")) for m in marks), marks
    assert sum(m == "run" for m in marks) >= 3 and {"run: fails", "run: kfp-api", "run: docker"} <= set(marks)
    assert sum(m == "run: docker" for m in marks) == 1  # tests/test_docker.py runs the one


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings."""
    titles = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}


def test_every_guide_is_linked_from_the_readme_and_every_relative_link_resolves():
    for page in PAGES[1:]:
        assert f"]({page.relative_to(ROOT)}" in README.read_text(), page
    for page in (*PAGES, ROOT / "docs" / "design.md"):
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", page.read_text()):
            if "://" in target:
                continue
            path = page.parent / target if target else page
            assert path.exists(), (page.name, target)
            assert not anchor or path.suffix != ".md" or anchor in _anchors(path), (page.name, target, anchor)


def test_readme_excerpts_are_commands_the_guides_run():
    for m in _BLOCK.finditer(README.read_text()):
        if (m["mark"] or "").startswith("as in: "):
            guide = ROOT / m["mark"].removeprefix("as in: ")
            assert any(m["code"] in code for _, code, _ in blocks(KINDS, (guide,))), (guide, m["code"])


def test_same_figures_allows_the_last_digits_and_nothing_more():
    shown = "epoch 1/3: 7.73 s, loss 0.0478, train accuracy 0.9192\n...\ntest accuracy 0.9470\n"
    same_figures(shown, "x\nepoch 1/3: 3.01 s, loss 0.0479, train accuracy 0.9191\nother\ntest accuracy 0.9471")
    with pytest.raises(AssertionError, match="not printed"):
        same_figures(shown, "epoch 1/3: 3.01 s, loss 0.0478, train accuracy 0.9192\ntest accuracy 0.9490")
    with pytest.raises(AssertionError, match="not printed"):  # in order
        same_figures(shown, "test accuracy 0.9470\nepoch 1/3: 3.01 s, loss 0.0478, train accuracy 0.9192")


def test_same_lines_sees_a_changed_message_and_not_changed_numbers():
    shown = "checkpoints: /home/me/x\n...\nchampion 20261207T013857Z-3a9e27d64217: worse on 2 class(es): 3, 4\n"
    same_lines(shown, "champion 20261208T000000Z-0123456789ab: worse on 3 class(es): 1, 2, 9\nmore")
    same_lines("epoch 1/3: 3.88 s (774 ex/s)", "epoch 1/3: 2.27 s (1,323 ex/s)")
    with pytest.raises(AssertionError, match="shown but not printed"):
        same_lines("test accuracy 0.9470, test loss 0.0185", "test accuracy 0.9470, test loss 0.0185 (the loss: ...)")


@pytest.mark.slow
def test_readme_and_guide_commands_run_as_written(mnist_data_dir, tmp_path):
    from kfp_api_stand_in import RecordingKfpApi

    cwd, env = _workdir(tmp_path), _environment(mnist_data_dir)
    try:
        api = RecordingKfpApi(8080).__enter__()
    except OSError as e:  # the guides' --host; only a test run beside a real KFP port-forward would hold it
        pytest.fail(f"localhost:8080 is taken ({e}); the Kubeflow commands need it")
    try:
        for page, (mark, code, shown) in [(page, block) for page in PAGES for block in blocks(RUN_HERE, (page,))]:
            if mark == "run: fails":
                printed = []
                for line in code.strip().splitlines():
                    result = _shell(line, cwd, env, check=False)
                    assert result.returncode == 2, (line, result.stderr[-2000:])
                    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
                    printed.append(result.stderr.strip())
                _same_output(shown, "\n".join(printed))
                continue
            result = _shell(code, cwd, env, merged=mark != "run: kfp-api")  # the API's answers: stdout
            if mark == "run: kfp-api":
                _same_output(shown, result.stdout)
            elif shown:
                same_figures(shown, result.stdout, SMALL_DATA_TOLERANCE.get(page.name, FIGURE_TOLERANCE))
                same_lines(shown, result.stdout)
    finally:
        api.__exit__(None, None, None)
    assert sum(r["path"] == "/apis/v2beta1/runs" and r["method"] == "POST" for r in api.requests) == 1
    assert (cwd / "published" / "LATEST").exists() and (cwd / "first8.npy").exists()
    assert "test accuracy" in (cwd / "out" / "report.md").read_text()
    assert "process 1 done" in (cwd / "process-1.log").read_text()  # the second process of docs/distributed.md
    made = {p.name + "/" * p.is_dir() for p in cwd.iterdir() if p.name != "pipeline.py"}  # what a clone would hold
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *made], cwd=ROOT, capture_output=True, text=True)
    assert not made - set(ignored.stdout.split()), f"not in .gitignore: {made - set(ignored.stdout.split())}"
