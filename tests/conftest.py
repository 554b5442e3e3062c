"""Shared fixtures: real MNIST from a prepared TFDS data dir, ingested once per session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_TRAIN = "train[:512]"
SMALL_TEST = "test[:256]"


def tfds_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")


@pytest.fixture(scope="session")
def mnist_data_dir() -> str:
    """A TFDS data dir holding prepared ``mnist`` (seeded offline on first use)."""
    from mlp_core.data.offline_mnist import is_prepared, seed_tfds_cache

    data_dir = tfds_data_dir()
    if not is_prepared(data_dir):
        seed_tfds_cache(data_dir)
    return data_dir


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the project root, as a user would."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def run_main(*args: str) -> subprocess.CompletedProcess:
    """``run_cli("-m", module, *argv)`` in this process: the module's ``main(argv)``, for a step a test needs done
    (a model to test, a dataset), not one whose process is the subject (exit status, start-up, sys.modules).

    Spares the 4-10 s start of a process that imports TensorFlow and JAX. What main prints is captured as the
    process's stdout and stderr would be; a non-zero exit (or any exception) fails the test, as run_cli's check does.
    """
    import contextlib
    import importlib
    import io

    assert args[0] == "-m", args
    main = importlib.import_module(args[1]).main
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args[2:]))
        except SystemExit as e:
            code = e.code
    if code not in (0, None):
        raise AssertionError(f"{' '.join(args)} exited {code}:\n{stderr.getvalue()[-3000:]}")
    return subprocess.CompletedProcess(list(args), 0, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="session")
def small_dataset(mnist_data_dir, tmp_path_factory) -> Path:
    """Dataset artifact of the first 512 train and 256 test MNIST examples, 3 train shards."""
    from components.ingest import ingest_dataset

    out = tmp_path_factory.mktemp("small") / "dataset"
    ingest_dataset(out, tfds_data_dir=mnist_data_dir, train_split=SMALL_TRAIN, test_split=SMALL_TEST, records_per_shard=200, progress=False)
    return out


@pytest.fixture(scope="session")
def small_model(small_dataset, tmp_path_factory) -> Path:
    """One epoch on ``small_dataset`` (the train step's defaults otherwise), trained once per worker and shared:
    ``model/``, ``train_metrics.json``, ``tensorboard/`` and evaluate's ``test_metrics.json`` under the returned
    folder. Read-only for the tests: one that damages it copies it first."""
    out = tmp_path_factory.mktemp("small-model")
    run_main("-m", "components.train", "--dataset", str(small_dataset), "--model", str(out / "model"),
             "--metrics", str(out / "train_metrics.json"), "--tensorboard", str(out / "tensorboard"), "--epochs", "1")
    run_main("-m", "components.evaluate", "--model", str(out / "model"), "--dataset", str(small_dataset),
             "--metrics", str(out / "test_metrics.json"))
    return out


@pytest.fixture(scope="session")
def full_dataset(mnist_data_dir, tmp_path_factory) -> Path:
    """Dataset artifact of all of MNIST (60,000 train, 10,000 test)."""
    from components.ingest import ingest_dataset

    out = tmp_path_factory.mktemp("full") / "dataset"
    ingest_dataset(out, tfds_data_dir=mnist_data_dir, progress=False)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(script: str, what: str, timeout: float) -> "tuple[int, subprocess.Popen]":
    """Start ``tests/<script> --port P`` on a free loopback port; wait until it accepts connections."""
    import socket
    import time

    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / script), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port, proc
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.2)


@pytest.fixture(scope="session")
def gcs_emulator():
    """gcp-storage-emulator on a loopback port (with generation preconditions: gcs_emulator_stand_in.py).

    Yields a ``google.cloud.storage`` client for it.
    """
    from artifacts import storage

    port, proc = _start_server("gcs_emulator_stand_in.py", "gcp-storage-emulator", 30)
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    storage._client = None
    try:
        yield storage.client()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        storage._client = None
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


S3_KEYS = {"accesskey": "stand-in-access-key", "secretkey": "stand-in-secret-key"}  # the mlpipeline-minio-artifact secret


@pytest.fixture(scope="session")
def s3_server():
    """An S3-compatible server (moto, one request at a time: s3_server.py) on a loopback port, with bucket mlpipeline.

    Sets the standard AWS variables for this process (endpoint, keys, region) and yields a boto3 client.
    """

    from artifacts import storage

    port, proc = _start_server("s3_server.py", "the S3 server (moto)", 60)
    names = ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
    previous = {name: os.environ.get(name) for name in names}
    os.environ.update({"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": S3_KEYS["accesskey"],
                       "AWS_SECRET_ACCESS_KEY": S3_KEYS["secretkey"], "AWS_REGION": "us-east-1"})
    storage._s3_clients.clear()
    client = storage.s3_client()
    client.create_bucket(Bucket="mlpipeline")
    try:
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        storage._s3_clients.clear()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
