"""What ``pipeline.py run`` links opens in a browser as a page, and ``runs`` finds the runs of the default root.

Slow: two small runs in a fresh folder's default pipeline root, one finished, one stopped by validate; headless
Chromium (Debian's ``chromium``) renders each printed report link, and its text is checked, not the HTML source.
"""

import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from conftest import ROOT, SMALL_TEST, SMALL_TRAIN

pytestmark = pytest.mark.slow


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: CI must install Debian's chromium package")
        pytest.skip("needs Debian's chromium package (apt-get install chromium)")
    return found


class _Text(HTMLParser):
    """The text a reader sees: every text node outside <script> and <style>."""

    def __init__(self):
        super().__init__()
        self.parts, self._hidden = [], 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.parts.append(" ".join(data.split()))


def _shown(uri: str, tmp_path) -> str:
    """The text of the page Chromium renders from ``uri``."""
    dom = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", uri],
        capture_output=True, text=True, timeout=120, check=True).stdout
    page = _Text()
    page.feed(dom)
    return " ".join(page.parts)


def _link(stdout: str, label: str) -> str:
    (uri,) = [line.split()[1] for line in stdout.splitlines() if line.startswith(f"  {label} ")]
    assert uri.startswith("file:///") and uri.endswith(".html"), uri
    return uri


@pytest.fixture(scope="module")
def runs(mnist_data_dir, tmp_path_factory):
    """A fresh folder and, in its default pipeline root, a finished run and one validate stopped."""
    here = tmp_path_factory.mktemp("fresh")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "pipeline.py"), "run", "--tfds-data-dir", mnist_data_dir,
                               "--train-split", SMALL_TRAIN, *args],
                              cwd=here, capture_output=True, text=True, timeout=600)

    finished = run("--test-split", SMALL_TEST, "--epochs", "1")
    assert finished.returncode == 0, finished.stderr[-3000:]
    leaked = run("--test-split", "train[:256]")  # every test image is a train image: validate stops the run
    assert leaked.returncode == 1, leaked.stderr[-3000:]
    return here, finished, leaked


def test_runs_lists_the_runs_of_the_default_root(runs):
    here, finished, leaked = runs
    listed = subprocess.run([sys.executable, str(ROOT / "pipeline.py"), "runs"], cwd=here, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert [row.split()[3] for row in listed[1:]] == ["finished", "failed"], listed


def test_the_report_link_opens_as_a_page(runs, tmp_path):
    accuracy = next(line for line in runs[1].stdout.splitlines() if line.startswith("test accuracy "))
    text = _shown(_link(runs[1].stdout, "report"), tmp_path)
    assert f"test accuracy {accuracy.split()[2].rstrip(',')}" in text and "Per class" in text, text[:2000]
    assert "<html" not in text and "<h1" not in text, text[:2000]


def test_a_run_validate_stopped_prints_its_report_link_which_opens_as_a_page(runs, tmp_path):
    leaked = runs[2]
    assert "  report " not in leaked.stdout and "validate failed: " in leaked.stderr, leaked.stdout + leaked.stderr
    text = _shown(_link(leaked.stdout, "validation"), tmp_path)
    assert "Data validation of" in text and "Schema" in text, text[:2000]
    assert "<html" not in text and "<h1" not in text, text[:2000]
