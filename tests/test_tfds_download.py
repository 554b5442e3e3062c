"""A tfds dataset that is not prepared, on a machine without a network: real tfds builders in empty data dirs.

The network is taken away the way a user's environment does it: ``HTTP(S)_PROXY`` pointing at a closed local port
(every request, the probe's and tfds's own downloader's, goes through ``requests``, which honours it), so these tests
behave the same on a machine that has a network. No test waits on a network for more than a second.
"""

import http.server
import socket
import threading
from pathlib import Path

import pytest

from tests.conftest import run_cli


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proxy_env(proxy: str) -> dict[str, str]:
    return {key: proxy for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")} | {
        "NO_PROXY": "", "no_proxy": ""}


@pytest.fixture
def no_network(monkeypatch) -> str:
    """Every HTTP(S) request of this process goes to a proxy that is not there (connection refused at once)."""
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for key, value in _proxy_env(proxy).items():
        monkeypatch.setenv(key, value)
    return proxy


class _NoFilesProxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that has none of the files: 404 for every GET and HEAD (tfds's downloader raises DownloadError
    on any status but 200, download/downloader.py _assert_status; 404 is not retried)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy_without_files(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoFilesProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for key, value in _proxy_env(f"http://127.0.0.1:{server.server_address[1]}").items():
        monkeypatch.setenv(key, value)
    yield
    server.shutdown()
    server.server_close()


def test_fashion_mnist_not_prepared_with_no_network_is_one_line_and_writes_nothing(tmp_path):
    """The new user's case: the default data dir ($TFDS_DATA_DIR), no network, --no-progress."""
    data_dir = tmp_path / "tensorflow_datasets"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("mine")
    (data_dir / "downloads").mkdir()
    before = _listing(data_dir)
    proxy = f"http://127.0.0.1:{_closed_port()}"
    r = run_cli("-m", "components.ingest", "--output", str(tmp_path / "out"), "--dataset-name", "fashion_mnist",
                "--no-progress", env={"TFDS_DATA_DIR": str(data_dir), **_proxy_env(proxy)}, check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stdout == ""
    [line] = r.stderr.strip().splitlines()  # no urllib3 retry warnings, no absl warnings, no progress bars
    assert line.startswith(f"error: fashion_mnist is not prepared in {data_dir} and cannot be downloaded from here "
                           f"(fashion-mnist.s3-website.eu-central-1.amazonaws.com:80 through the proxy {proxy}: ")
    assert "Connection refused" in line
    assert "tfds.builder('fashion_mnist', data_dir='DIR').download_and_prepare()" in line
    assert line.endswith(f"then copy DIR/fashion_mnist into {data_dir}")
    assert _listing(data_dir) == before
    assert not (tmp_path / "out").exists()


def test_mnist_not_prepared_points_at_the_offline_seed(tmp_path, no_network):
    from mlp_core.errors import UserError
    from mlp_core.data.tfds_source import open_builder

    with pytest.raises(UserError) as refused:
        open_builder("mnist", str(tmp_path), progress=False)
    assert str(refused.value).startswith(f"mnist is not prepared in {tmp_path} and cannot be downloaded from here "
                                         "(storage.googleapis.com:443 through the proxy")
    assert str(refused.value).endswith(f"python -m components.ingest seed-tfds-cache --data-dir {tmp_path}")
    assert _listing(tmp_path) == []


def test_a_failed_download_removes_only_what_it_created(tmp_path, proxy_without_files):
    """The hosts answer (through the proxy), so tfds downloads; every file is missing, so it fails: its '*.tmp.*'
    downloads and the dataset folder it made go, the user's files and folders stay."""
    from mlp_core.errors import UserError
    from mlp_core.data.tfds_source import open_builder

    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "downloads" / "other").mkdir(parents=True)
    (tmp_path / "downloads" / "other" / "data.bin").write_bytes(b"mine")
    before = _listing(tmp_path)
    with pytest.raises(UserError) as refused:
        open_builder("fashion_mnist", str(tmp_path), progress=False)
    message = str(refused.value)
    assert message.startswith(f"fashion_mnist is not prepared in {tmp_path} and downloading it failed (")
    assert "HTTP code: 404" in message and "\n" not in message
    assert _listing(tmp_path) == before


def test_the_probe_gives_up_after_its_timeout(monkeypatch):
    """A proxy that accepts the connection and never answers: the probe returns after its timeout, not tfds's
    retries."""
    from mlp_core.data.tfds_download import unreachable_host

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        for key, value in _proxy_env(f"http://127.0.0.1:{silent.getsockname()[1]}").items():
            monkeypatch.setenv(key, value)
        why = unreachable_host(["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/a.gz"], timeout=0.5)
    assert why is not None and why.startswith("fashion-mnist.s3-website.eu-central-1.amazonaws.com:80 through")
    assert "timed out" in why or "no answer within 0.5 s" in why


def test_a_dataset_whose_files_are_downloaded_by_hand_names_the_manual_folder(tmp_path, no_network):
    from mlp_core.errors import UserError
    from mlp_core.data.tfds_source import open_builder

    with pytest.raises(UserError, match=(f"cifar10_n is not prepared in {tmp_path} and its files must be "
                                            f"downloaded by hand: put them in {tmp_path}/downloads/manual")):
        open_builder("cifar10_n", str(tmp_path), progress=False)
    assert _listing(tmp_path) == []


def test_a_path_as_dataset_name_points_at_source(tmp_path):
    (tmp_path / "mydigits").mkdir()
    before = _listing(tmp_path)
    r = run_cli("-m", "components.ingest", "--output", str(tmp_path / "out"), "--dataset-name", "./mydigits",
                env={"TFDS_DATA_DIR": str(tmp_path / "nowhere")}, check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [
        "error: --dataset-name './mydigits' is a path, not a tfds dataset name; a folder of your own images is read "
        "with --source ./mydigits (README: Train on your own images)"]
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("name, message", [
    ("/data/mydigits", "--dataset-name '/data/mydigits' is a path, not a tfds dataset name; a folder of your own "
                       "images is read with --source /data/mydigits"),
    ("gs://bucket/images", "is a path, not a tfds dataset name; a folder of your own images is read with --source "
                           "gs://bucket/images"),
    ("fashion_mnsit", "unknown tfds dataset 'fashion_mnsit'; did you mean fashion_mnist"),
    ("cifar10_corrupted/brightnes_1", "tfds dataset cifar10_corrupted has no config 'brightnes_1'; did you mean "
                                      "brightness_1"),
    ("my digits", "--dataset-name 'my digits' is not a tfds dataset name"),
])
def test_names_tfds_cannot_use_are_refused_before_any_work(name, message):
    from mlp_core.errors import UserError
    from mlp_core.data.tfds_source import check_dataset_name

    from components._cli import error_line

    with pytest.raises(UserError) as refused:
        check_dataset_name(name)
    assert message in error_line(refused.value)  # the field named as the command line's flag


def test_a_folder_named_like_an_unknown_dataset_points_at_source(tmp_path, monkeypatch):
    from mlp_core.errors import UserError
    from mlp_core.data.tfds_source import check_dataset_name

    (tmp_path / "mydigits").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="unknown tfds dataset 'mydigits'; a folder of your own images is read "
                                           "with --source mydigits"):
        check_dataset_name("mydigits")


def test_a_prepared_dataset_never_probes_the_network(mnist_data_dir, no_network):
    from mlp_core.data.tfds_source import open_builder

    assert open_builder("mnist", mnist_data_dir, progress=False).is_prepared()  # a probe would have refused


def test_nothing_is_left_in_the_temporary_folder(tmp_path, no_network, monkeypatch):
    """tfds leaks an empty tmp*tfds folder per builder of a dataset not prepared (DatasetInfo.initialize_from_bucket);
    not through this step."""
    import tempfile

    from mlp_core.errors import UserError
    from mlp_core.data.tfds_source import open_builder

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(UserError):
        open_builder("fashion_mnist", str(tmp_path), progress=False)
    assert list(scratch.iterdir()) == []
