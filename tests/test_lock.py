"""The lock files (requirements/*.txt, made by `make lock` with uv) agree with pyproject.toml.

The image installs its variant's lock with --require-hashes (test_docker checks
what it installed); here, without a network: every dependency pyproject.toml
declares for that variant is pinned, at a version its specifier allows, with
hashes, and the lock says which command made it.
"""

import hashlib
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

VARIANTS = {"cpu": (), "cuda": ("cuda",), "dev": ("test", "vertex", "docker")}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s\\]+)", re.MULTILINE)


def lock_sha256(variant: str) -> str:
    """The digest the image carries as its label ``io.github.jax-mlp-pipeline.lock-sha256``."""
    return hashlib.sha256((ROOT / "requirements" / f"{variant}.txt").read_bytes()).hexdigest()


def locked_versions(variant: str) -> dict[str, str]:
    """``{canonical name: version}`` pinned by ``requirements/<variant>.txt``."""
    text = (ROOT / "requirements" / f"{variant}.txt").read_text()
    return {canonicalize_name(name): version for name, version in _PIN.findall(text)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_declared_dependency_is_pinned_within_its_range(variant):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(d for extra in VARIANTS[variant] for d in project["optional-dependencies"][extra])]
    locked = locked_versions(variant)
    for line in declared:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{variant}: {name} is declared in pyproject.toml but not locked: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{variant}: {name}=={locked[name]} is outside {requirement.specifier}: run make lock")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pin_has_hashes_and_the_lock_names_its_command(variant):
    text = (ROOT / "requirements" / f"{variant}.txt").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    pinned = [e for e in entries if "==" in e.split("\n", 1)[0]]
    assert len(pinned) == len(locked_versions(variant)) > 50
    assert all("--hash=sha256:" in e for e in pinned)
    extras = "".join(f" --extra {e}" for e in VARIANTS[variant])
    assert re.search(rf"uv pip compile pyproject.toml .*--generate-hashes.*{extras} -o requirements/{variant}.txt", text)


def test_the_cuda_lock_differs_from_the_cpu_lock_only_by_cuda_packages():
    cpu, cuda = locked_versions("cpu"), locked_versions("cuda")
    assert {k: v for k, v in cuda.items() if k in cpu} == cpu
    assert all(name.startswith(("nvidia-", "jax-cuda")) for name in set(cuda) - set(cpu))


def test_the_bootstrap_lock_pins_the_uv_that_dev_locks_with_every_platforms_hashes():
    # `make setup` installs requirements/bootstrap.txt with the interpreter's own pip, then dev.txt with that uv.
    text = (ROOT / "requirements" / "bootstrap.txt").read_text()
    assert set(_PIN.findall(text)) == {("uv", locked_versions("dev")["uv"])}
    assert text.count("--hash=sha256:") >= 10  # one wheel per platform, not only this machine's
    assert "uv pip compile requirements/bootstrap.in" in text
