"""README's Quick start as a new user meets it, and the Docker build context it leaves behind.

The set-up block (clone, `make setup`, activate) runs as printed in a fresh clone of this checkout's HEAD,
then the first command printed after it; `make test-fast` itself would take a quarter of an hour, so the
test checks what it runs instead (`make -n`, and pytest with xdist in `.venv`). The `.dockerignore` check
uses docker-py's own matcher, the one its `build()` applies to a context.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from test_readme import _BLOCK, README, sh_blocks

QUICK_TIER = '.venv/bin/python -m pytest -n auto -m "not slow and not docker"'


def quick_start() -> tuple[str, str]:
    """The Quick start's set-up block and the first ```sh block after it (the first run)."""
    text = README.read_text()
    section = text[text.index("## Quick start"):]
    section = section[:section.index("\n## ", 1)]
    set_up, first_run = [m["code"] for m in _BLOCK.finditer(section)][:2]
    return set_up, first_run


def _as_run_here(set_up: str, upstream: Path) -> str:
    """The set-up block with two changes: clone ``upstream`` (same folder name), and `make -n test-fast`."""
    url = re.search(r"^git clone (\S+)", set_up, re.M)[1]
    assert Path(url).name == upstream.name, (url, upstream)
    set_up = set_up.replace(url, str(upstream), 1)
    set_up, n = re.subn(r"^make test-fast\b.*$", "make -n test-fast > make-n-test-fast.txt", set_up, flags=re.M)
    assert n == 1, set_up
    return set_up


def _new_user_environment(tfds_data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    # A stock machine has no uv: `make setup` must bring its own (requirements/bootstrap.txt). A uv that fails comes
    # first on PATH (pyenv's shims folder, which may hold one, also holds python3.11, so it cannot simply go).
    no_uv = tfds_data_dir.parent / "no-uv"
    no_uv.mkdir(exist_ok=True)
    (no_uv / "uv").write_text("#!/bin/sh\necho 'error: a new user has no uv on PATH' >&2\nexit 127\n")
    (no_uv / "uv").chmod(0o755)
    env["PATH"] = os.pathsep.join([str(no_uv), env["PATH"]])
    # Run from `make test PYTHON=python3` (CI), make passes that to the clone's make twice: in MAKEFLAGS, and as an
    # environment variable (GNU make exports every variable set on its command line to its recipes), which
    # `PYTHON ?= .venv/bin/python` would then not override. A new user's shell has neither.
    makefile_variables = re.findall(r"^(\w+) \?=", (ROOT / "Makefile").read_text(), re.M)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL", *makefile_variables):
        env.pop(name, None)
    # A new user has no prepared MNIST: `make setup`'s seed-tfds-cache prepares it here.
    return {**env, "TFDS_DATA_DIR": str(tfds_data_dir)}


def test_a_new_user_has_none_of_the_make_variables_ci_passes(monkeypatch, tmp_path):
    # CI runs `make test PYTHON=python3`: make exports PYTHON=python3 to pytest, and the clone's `make setup`
    # would install into python3 rather than make .venv (what failed CI at stop 29).
    monkeypatch.setenv("PYTHON", "python3")
    monkeypatch.setenv("MAKEFLAGS", " -- PYTHON=python3")
    env = _new_user_environment(tmp_path)
    assert not {"PYTHON", "MAKEFLAGS", "BASE_PYTHON", "VENV"} & env.keys()
    made = subprocess.run(["make", "-n", "setup"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert re.search(r"^\.venv/bin/python -m uv pip install .* --no-deps -e \.$", made.stdout, re.M), made.stdout


def test_the_quick_start_is_set_up_activate_then_run():
    set_up, first_run = quick_start()
    lines = [line.split("#")[0].strip() for line in set_up.strip().splitlines()]
    assert lines[0].startswith("git clone ") and lines[1:] == ["make setup", ". .venv/bin/activate", "make test-fast"]
    assert first_run.startswith("python pipeline.py run ")


@pytest.mark.slow
def test_quick_start_as_printed_in_a_fresh_clone(tmp_path):
    upstream = tmp_path / "upstream" / "jax-mlp-pipeline"  # this checkout, under the README's folder name
    upstream.parent.mkdir()
    upstream.symlink_to(ROOT)
    home = tmp_path / "home"
    home.mkdir()
    set_up, first_run = quick_start()
    between = 'printf "python is %s\\nset-up took %s s\\n" "$(command -v python)" "$SECONDS"; SECONDS=0'
    script = "\n".join([_as_run_here(set_up, upstream), between, first_run, 'echo "the run took $SECONDS s"'])
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=home, capture_output=True, text=True,
                            env=_new_user_environment(tmp_path / "tfds"), timeout=3600)
    assert result.returncode == 0, f"{script}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    print("\nquick start:", *re.findall(r"^(?:set-up|the run) took \d+ s$", result.stdout, re.M), sep="\n  ")

    clone = home / "jax-mlp-pipeline"
    venv_python = clone / ".venv" / "bin" / "python"
    assert f"python is {venv_python}\n" in result.stdout  # the activated .venv, not whichever python3 is first
    assert "pipeline finished" in result.stdout + result.stderr
    # The venv kept the pip its interpreter bundles (a stock 3.11.7 brings 23.2.1): set-up needed no newer one.
    bundled = subprocess.run([venv_python, "-c", "import ensurepip; print(ensurepip.version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    pip = subprocess.run([venv_python, "-m", "pip", "--version"], capture_output=True, text=True, check=True).stdout
    assert pip.startswith(f"pip {bundled} "), (pip, bundled)
    # `runs` with no flags lists the run the Quick start made (both use the default pipeline root).
    listed = subprocess.run([venv_python, "pipeline.py", "runs"], cwd=clone, capture_output=True, text=True, check=True)
    assert "finished" in listed.stdout, listed.stdout
    assert QUICK_TIER in (clone / "make-n-test-fast.txt").read_text().splitlines()
    plugins = subprocess.run([venv_python, "-m", "pytest", "-VV"], cwd=clone, capture_output=True, text=True, check=True)
    assert "pytest-xdist" in plugins.stdout + plugins.stderr  # what gives `make test-fast` its -n
    shutil.rmtree(clone / ".venv")  # 3 GB; the rest of the clone stays for whoever reads it


# --- The build context: what .dockerignore lets through ---

_WRITES = re.compile(r"""
    --(?:output|pipeline-root|model|dataset|metrics|report|report-markdown|publish-uri|source)[ =]['"]?(?P<flag>[^'"\s]+)
  | >\s*(?P<redirect>[^\s&|;]+)
  | \$PWD/(?P<mount>[^:"'/\s]+)
  | (?:np\.save|Path)\(f?['"](?P<literal>[^'"]+)['"]
  | \bmkdir\s+(?:-p\s+)?(?P<mkdir>[^\s;&|]+)
""", re.X)


def readme_local_paths() -> dict[str, bool]:
    """Every top-level name the README's and guides' commands write or read here: ``{name: is_folder}``."""
    names: dict[str, bool] = {}
    for m in sh_blocks():
        for w in _WRITES.finditer(m["code"]):
            path = next(v for v in w.groupdict().values() if v)
            if "://" in path or path.startswith(("/", "~", "$", "-")) or ":" in path.split("/")[0]:
                continue  # a bucket, a URL, an absolute or home path, a variable, a Vertex resource name
            top, _, rest = path.partition("/")
            names[top] = names.get(top, False) or bool(rest) or not Path(top).suffix  # runs, out: folders
    return names


def dockerignore_patterns(root: Path) -> list[str]:
    """.dockerignore's patterns, read as docker-py's APIClient.build reads them (docker/api/build.py)."""
    return [line.strip() for line in (root / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def dockerfile_sources() -> list[str]:
    """The paths the Dockerfile COPYs from the context, for each accelerator."""
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += [s.replace("${ACCELERATOR}", a) for s in line.split()[1:-1] for a in ("cpu", "cuda")]
    return sorted(set(sources))


def test_dockerignore_leaves_out_what_the_readme_writes_and_keeps_what_the_dockerfile_copies(tmp_path):
    from docker.utils.build import exclude_paths  # what docker-py sends as the context (docker/utils/build.py)

    outputs = readme_local_paths()
    assert {"spans", "out", "published", "docker-runs", "first8.npy"} <= set(outputs), outputs  # the parse still works
    left_out = {**outputs, ".venv": True, ".pytest_cache": True, ".hypothesis": True, "jax_mlp_pipeline.egg-info": True,
                ".git": True, "tests": True}
    leftovers = {"mlp_core/__pycache__/model.cpython-311.pyc"}  # inside a copied folder
    sources = dockerfile_sources()
    assert "pipeline.py" in sources and "requirements/cpu.txt" in sources, sources
    wanted = {s if "." in s else f"{s}/__init__.py" for s in sources}
    for path in {f"{name}/x" if is_folder else name for name, is_folder in left_out.items()} | leftovers | wanted:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    (tmp_path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())

    context = exclude_paths(str(tmp_path), dockerignore_patterns(tmp_path))
    assert not {p for p in context if p.split("/")[0] in left_out or p in leftovers}, sorted(context)
    assert wanted <= context, sorted(context)
