"""A clone stays clean: .gitignore covers every path the README's and the guides' commands write."""

import subprocess

from conftest import ROOT
from test_quickstart import readme_local_paths


def test_gitignore_covers_what_the_readme_and_guides_write():
    # local_outputs: the default pipeline root, which the Quick start's run uses without naming it.
    written = {**readme_local_paths(), "local_outputs": True}
    expected = {"out", "published", "retrained", "spans", "incoming", "scans", "first8.npy", "tune.html"}
    assert expected <= set(written), written  # the parse still finds them
    paths = [f"{name}/" if is_folder else name for name, is_folder in written.items()]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    not_ignored = set(paths) - set(ignored.stdout.split())
    assert not not_ignored, f"not in .gitignore: {not_ignored}"


def test_gitignore_keeps_the_project_files():
    tracked = ["README.md", "docs/local.md", "pipeline.py", "requirements/cpu.txt", "tests/golden/"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *tracked], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout == ""
