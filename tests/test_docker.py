"""The project image, with a real Docker engine: builds, runs every step, runs the DAG.

Needs a running engine; `.ci/run` starts one and sets JAX_MLP_BASE_IMAGE to a
stand-in for python:3.11-slim (Docker Hub is unreachable on CI machines).
Without an engine these tests skip, unless JAX_MLP_REQUIRE_DOCKER=1 (CI) makes
that a failure.
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SMALL_TEST, SMALL_TRAIN, run_cli
from test_lock import lock_sha256, locked_versions

pytestmark = pytest.mark.docker
IMAGE = os.environ.get("JAX_MLP_IMAGE", "jax-mlp-pipeline:test")


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def image() -> str:
    """Build the product Dockerfile (layers cached after the first build)."""
    if shutil.which("docker") is None or _docker("info", check=False).returncode != 0:
        if os.environ.get("JAX_MLP_REQUIRE_DOCKER") == "1":
            pytest.fail("no Docker engine, and JAX_MLP_REQUIRE_DOCKER=1")
        pytest.skip("no Docker engine running")
    base = os.environ.get("JAX_MLP_BASE_IMAGE")
    build_args = ["--build-arg", f"BASE_IMAGE={base}"] if base else []
    build_args += ["--build-arg", f"LOCK_SHA256={lock_sha256('cpu')}"]
    before = _docker("image", "inspect", IMAGE, "--format", "{{.Id}}", check=False).stdout.strip()
    started = time.perf_counter()
    _docker("build", "--network", "host", *build_args, "-t", IMAGE, str(ROOT))
    after = _docker("image", "inspect", IMAGE, "--format", "{{.Id}}").stdout.strip()
    if before and before != after:
        # The previous build of this tag, now untagged (3 GB a run): ours to remove, unless something still uses it.
        _docker("image", "rm", before, check=False)
    size = int(_docker("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    print(f"\nimage {IMAGE}: {size / 2**30:.2f} GiB, build {time.perf_counter() - started:.0f} s")
    return IMAGE


def _run(image: str, *args: str, mounts: tuple[Path, ...] = (), user: bool = True) -> subprocess.CompletedProcess:
    volumes = [a for m in mounts for a in ("-v", f"{m}:{m}")]
    who = ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp"] if user else []
    return _docker("run", "--rm", *who, *volumes, image, *args)


def test_image_runs_as_a_non_root_user(image):
    assert _run(image, "id", "-u", user=False).stdout.strip() != "0"


def test_image_has_no_entrypoint_and_kfp_installed(image):
    config = json.loads(_docker("image", "inspect", image).stdout)[0]["Config"]
    assert not config.get("Entrypoint")
    assert _run(image, "python", "-c", "import kfp, jax, mlp_core; print(kfp.__version__)", user=False).stdout.strip()
    # The steps that call Vertex AI (publish to the Model Registry, track) have its SDK and TensorBoard uploader.
    _run(image, "python", "-c", "from google.cloud import aiplatform_v1; from google.cloud.aiplatform.tensorboard import "
         "uploader", user=False)


_INSTALLED = ("import importlib.metadata as m, json; "
              "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")


def test_the_image_installs_exactly_the_lock_and_carries_its_digest(image):
    """A rebuild next month is the same image: every wheel pinned by requirements/cpu.txt, no other."""
    from packaging.utils import canonicalize_name

    installed = {canonicalize_name(k): v for k, v in json.loads(_run(image, "python", "-c", _INSTALLED).stdout).items()}
    locked = locked_versions("cpu")
    assert {name: installed.get(name) for name in locked} == locked
    # Beside the lock: the project itself and the venv's own installer.
    assert set(installed) - set(locked) <= {"jax-mlp-pipeline", "pip", "setuptools", "wheel"}
    labels = json.loads(_docker("image", "inspect", image).stdout)[0]["Config"]["Labels"]
    assert labels["io.github.jax-mlp-pipeline.lock-sha256"] == lock_sha256("cpu")
    assert _run(image, "printenv", "JAX_MLP_LOCK_SHA256").stdout.strip() == lock_sha256("cpu")


def test_a_build_with_a_wrong_lock_digest_fails(image):
    result = _docker("build", "--network", "host", "--build-arg", f"LOCK_SHA256={'0' * 64}",
                     *(["--build-arg", f"BASE_IMAGE={os.environ['JAX_MLP_BASE_IMAGE']}"]
                       if os.environ.get("JAX_MLP_BASE_IMAGE") else []),
                     "-t", "jax-mlp-pipeline:wrong-lock", str(ROOT), check=False)
    assert result.returncode != 0 and "requirements.lock: FAILED" in result.stderr + result.stdout


@pytest.mark.parametrize("module", ["components.ingest", "components.train", "components.evaluate", "components.publish",
                                    "components.track"])
def test_every_component_help_runs_in_the_image(image, module):
    assert _run(image, "python", "-m", module, "--help", user=False).stdout.startswith(f"usage: python -m {module}")


def _three_steps(prefix: list[str], data_dir: str, out: Path) -> dict:
    steps = [
        ["-m", "components.ingest", "--tfds-data-dir", data_dir, "--train-split", SMALL_TRAIN, "--test-split", SMALL_TEST,
         "--output", str(out / "dataset"), "--no-progress"],
        ["-m", "components.train", "--dataset", str(out / "dataset"), "--model", str(out / "model"), "--epochs", "2", "--no-shuffle"],
        ["-m", "components.evaluate", "--model", str(out / "model"), "--dataset", str(out / "dataset"),
         "--metrics", str(out / "metrics.json")],
    ]
    for step in steps:
        if prefix:
            _docker(*prefix, "python", *step)
        else:
            run_cli(*step)
    return json.loads((out / "metrics.json").read_text())


def test_components_in_docker_match_outside(image, mnist_data_dir, tmp_path):
    data_dir = str(Path(mnist_data_dir).resolve())
    outside = _three_steps([], data_dir, tmp_path / "outside")
    inside_dir = tmp_path / "inside"
    inside_dir.mkdir()
    prefix = ["run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
              "-v", f"{data_dir}:{data_dir}:ro", "-v", f"{inside_dir}:{inside_dir}", image]
    inside = _three_steps(prefix, data_dir, inside_dir)
    assert inside["confusion_matrix"] == outside["confusion_matrix"]
    assert inside["test_accuracy"] == pytest.approx(outside["test_accuracy"], abs=1e-6)
    assert inside["test_loss"] == pytest.approx(outside["test_loss"], rel=1e-5)
    meta_in = json.loads((inside_dir / "dataset" / "metadata.json").read_text())
    meta_out = json.loads((tmp_path / "outside" / "dataset" / "metadata.json").read_text())
    assert [s["sha256"] for s in meta_in["splits"]["train"]["shards"]] == [s["sha256"] for s in meta_out["splits"]["train"]["shards"]]


def test_readme_docker_commands_run_as_written(image, mnist_data_dir, small_dataset, tmp_path):
    """docs/docker.md's Docker block (the README links it), with this test's image in place of jax-mlp-pipeline:0.1.0.

    It evaluates out/model inside the image, then runs the whole DAG with kfp.local's
    DockerRunner (one epoch of full MNIST), as a cluster runs it.
    """
    from test_readme import _environment, _shell, _workdir, blocks

    cwd = _workdir(tmp_path)
    shutil.copytree(small_dataset, cwd / "out" / "dataset")
    run_cli("-m", "components.train", "--dataset", str(cwd / "out" / "dataset"), "--model", str(cwd / "out" / "model"),
            "--epochs", "1")
    [(_, code, _)] = blocks(("run: docker",))
    started = time.perf_counter()
    result = _shell(code.replace("jax-mlp-pipeline:0.1.0", image), cwd, _environment(mnist_data_dir))
    print(f"\ndocs/docker.md block (evaluate in the image, DockerRunner DAG of 1 epoch): {time.perf_counter() - started:.0f} s")
    assert json.loads((cwd / "out" / "docker_metrics.json").read_text())["num_examples"] == 256
    last = result.stdout.strip().splitlines()[-1]
    assert float(re.match(r"test accuracy ([\d.]+)", last).group(1)) >= 0.92, last


def test_compiled_yaml_names_the_image(image, tmp_path):
    # The CI image is the CPU variant: with a GPU request, compile would refuse it (test_clusters).
    run_cli("pipeline.py", "compile", "--image", image, "--accelerator", "none", "--output", str(tmp_path / "p.yaml"))
    executors = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {image}
