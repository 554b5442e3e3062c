"""Every command line's bad input, run as a user runs it, in a sandbox listed before and after.

Each case is a real process (``python -m ...`` / ``python pipeline.py ...``) whose
working directory, HOME and TMPDIR are folders of the sandbox; the case must end
with exit 2 and exactly one ``error:`` line, and the sandbox must hold exactly what
it held before: nothing created, changed or removed anywhere, temp files included.
The generated cases per class are in tests/test_trust_*.py; this is the listing check
across all the commands.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

CASES = [
    # components
    ("-m", "components.ingest", "--output", "gs://"),
    ("-m", "components.ingest", "--output", "o", "--source", "gcs://bucket/x"),
    ("-m", "components.train", "--dataset", "d", "--model", "m", "--checkpoint-dir", "gs://Bad_Bucket/x"),
    ("-m", "components.train", "--dataset", "d", "--model", "m", "--run-id=../../x", "--checkpoint-root", "roots"),
    ("-m", "components.train", "--dataset", "d", "--model", "d/m"),
    ("-m", "components.evaluate", "--model", "m", "--dataset", "d", "--publish-uri", "projects/p/locations//models/m"),
    ("-m", "components.publish", "--model", "m", "--publish-uri", "s3://ab", "--metrics-by-hand", "--test-accuracy", "0.9", "--test-loss", "0.1"),
    ("-m", "components.predict", "--server", "http://localhost:9", "--model-name", "../../admin", "x.npy"),
    ("-m", "components.new_data", "--dataset", "d", "--publish-uri", "file:///etc"),
    ("-m", "components.validate", "--dataset", "gs://bucket/d", "--statistics", "s", "--anomalies", "a"),
    ("-m", "components.track", "--job", "projects/p/locations/l/pipelineJobs/j", "--experiment", "ab",
     "--train-metrics", "t.json", "--test-metrics", "e.json"),
    # the pipeline and the clusters
    ("pipeline.py", "run", "--pipeline-root", "gs://"),
    ("pipeline.py", "compile", "--output", "gs://bucket/p.yaml"),
    ("pipeline.py", "submit", "--host", "http://user:hunter2@localhost:9", "--pipeline-root", "minio://mlpipeline/x"),
    ("pipeline.py", "submit", "--host", "http://localhost:9", "--namespace", "Team_A"),
    ("pipeline.py", "submit", "--host", "http://localhost:9", "--param", "publish_uri=gs://"),
    ("pipeline.py", "schedule", "--host", "http://localhost:9", "--cron", "0 3 31 2 *"),
    ("pipeline.py", "submit", "--vertex", "--project", "p", "--region", "us-central1", "--pipeline-root", "gs://bkt/r"),
    ("-m", "commands.kserve", "--name", "mnist", "--publish-uri", "published", "--version", "../x"),
    ("-m", "commands.kserve", "--name", "mnist", "--publish-uri", "published", "--namespace", "team.a"),
]


# What libraries cache in HOME when they are first imported (matplotlib's font list, Keras's config): theirs, made
# once per HOME whatever the command; not something a command wrote.
LIBRARY_CACHES = ("home/.cache", "home/.config", "home/.keras")


def _listing(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))
            if not (name := p.relative_to(root).as_posix()).startswith(LIBRARY_CACHES)}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("sandbox")
    for folder in ("cwd", "home", "tmp", "published/20261130T000000Z-0123456789ab"):
        (root / folder).mkdir(parents=True)
    (root / "cwd" / "notes.txt").write_text("the user's")
    (root / "published" / "LATEST").write_text("20261130T000000Z-0123456789ab\n")
    return root


@pytest.mark.parametrize("argv", CASES, ids=lambda argv: " ".join(argv)[:70])
def test_bad_input_leaves_the_sandbox_as_it_was(sandbox, argv):
    before = _listing(sandbox)
    argv = [a.replace("published", str(sandbox / "published")) if a == "published" else a for a in argv]
    env = {**os.environ, "HOME": str(sandbox / "home"), "TMPDIR": str(sandbox / "tmp"),
           "PYTHONPATH": str(ROOT), "GOOGLE_APPLICATION_CREDENTIALS": str(sandbox / "no-such-key.json"),
           "NO_GCE_CHECK": "True", "GCE_METADATA_HOST": "127.0.0.1:9"}
    script = [str(ROOT / argv[0]), *argv[1:]] if argv[0] == "pipeline.py" else list(argv)
    result = subprocess.run([sys.executable, *script], cwd=sandbox / "cwd", env=env, capture_output=True, text=True,
                            timeout=300)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "hunter2" not in result.stdout + result.stderr
    assert _listing(sandbox) == before, sorted(set(_listing(sandbox)) ^ set(before))
