"""artifacts.storage on every store it reads: a folder, Cloud Storage (gcp-storage-emulator), S3 (moto's server).

Kubeflow's bundled store is S3 behind the ``minio://`` scheme; a URI the backend
hands over in that scheme reaches the same S3 endpoint.
"""

import concurrent.futures

import pytest

from artifacts import storage
from mlp_core.errors import UserError


@pytest.mark.parametrize("uri", ["gs://", "gs:///path", "s3://", "gcs://bucket/x", "http://host/x", "file:///tmp/x",
                                 "minio://", "s3://Bad_Bucket/x", "s3://bucket/a/../b", "oci://registry/model"])
def test_a_uri_it_cannot_use_is_one_line_before_any_request(uri):
    for call in (storage.read_bytes, storage.exists, storage.list_names, storage.delete, storage.read_versioned,
                 lambda u: storage.write_bytes(u, b"x"), lambda u: storage.write_if_unchanged(u, b"x", 0)):
        with pytest.raises(UserError) as refused:
            call(uri + "/name" if uri.endswith("://") else uri)
        assert "\n" not in str(refused.value)


@pytest.fixture(params=["s3", "gs", "minio"])
def store(request, tmp_path):
    """A fresh prefix in each store."""
    if request.param == "gs":
        client = request.getfixturevalue("gcs_emulator")
        if client.lookup_bucket("storage-tests") is None:
            client.create_bucket("storage-tests")
        return f"gs://storage-tests/{tmp_path.name}"
    request.getfixturevalue("s3_server")
    return f"{request.param}://mlpipeline/{tmp_path.name}"


def test_round_trip_list_and_delete(store):
    storage.write_bytes(f"{store}/a/one.bin", b"\x00\x01")
    storage.write_bytes(f"{store}/a/sub/two.txt", b"two")
    assert storage.read_bytes(f"{store}/a/one.bin") == b"\x00\x01"
    assert storage.list_names(f"{store}/a") == ["one.bin", "sub/two.txt"]
    assert storage.exists(f"{store}/a/sub/two.txt") and not storage.exists(f"{store}/a/three")
    storage.delete(f"{store}/a/one.bin")
    storage.delete(f"{store}/a/one.bin")  # missing is fine
    assert storage.list_names(f"{store}/a") == ["sub/two.txt"]
    with pytest.raises(storage.StorageError, match="not found"):
        storage.read_bytes(f"{store}/a/one.bin")


def test_compare_and_swap_lets_exactly_one_of_two_writers_win(store):
    latest = f"{store}/LATEST"
    assert storage.read_versioned(latest) == (None, 0)
    storage.write_if_unchanged(latest, b"v1\n", 0)
    with pytest.raises(storage.PreconditionFailed):
        storage.write_if_unchanged(latest, b"v0\n", 0)  # created meanwhile
    current, version = storage.read_versioned(latest)
    assert current == b"v1\n"
    storage.write_if_unchanged(latest, b"v2\n", version)
    with pytest.raises(storage.PreconditionFailed):
        storage.write_if_unchanged(latest, b"v3\n", version)  # stale
    assert storage.read_bytes(latest) == b"v2\n"

    _, version = storage.read_versioned(latest)

    def swap(text):
        try:
            storage.write_if_unchanged(latest, text, version)
            return text
        except storage.PreconditionFailed:
            return None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        won = [w for w in pool.map(swap, [f"w{i}\n".encode() for i in range(8)]) if w]
    assert len(won) == 1 and storage.read_bytes(latest) == won[0]


def test_kubeflows_minio_scheme_is_the_same_s3_bucket(s3_server, tmp_path):
    storage.write_bytes(f"minio://mlpipeline/{tmp_path.name}/x", b"same")
    assert storage.read_bytes(f"s3://mlpipeline/{tmp_path.name}/x") == b"same"


def test_a_missing_bucket_and_missing_keys_are_one_line(s3_server, monkeypatch):
    with pytest.raises(storage.StorageError, match="does not exist") as missing:
        storage.read_bytes("s3://no-such-bucket/x")
    assert "\n" not in str(missing.value)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    storage._s3_clients.clear()
    try:
        with pytest.raises(storage.StorageError, match="no credentials for s3://mlpipeline/x") as refused:
            storage.read_bytes("s3://mlpipeline/x")
        assert "\n" not in str(refused.value)
    finally:
        storage._s3_clients.clear()


def test_the_bundled_store_defaults_to_kubeflows_endpoint(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    storage._s3_clients.clear()
    try:
        assert storage.s3_client(bundled=True).meta.endpoint_url == "http://seaweedfs.kubeflow:9000"
        assert storage.s3_client().meta.endpoint_url.startswith("https://s3.")
    finally:
        storage._s3_clients.clear()


def test_publish_to_s3_moves_latest_by_compare_and_swap(s3_server, small_dataset, tmp_path, monkeypatch):
    from conftest import run_cli
    from components.publish import LATEST, publish_model, read_champion

    model = tmp_path / "model"
    run_cli("-m", "components.train", "--dataset", str(small_dataset), "--model", str(model), "--epochs", "1")
    monkeypatch.chdir(tmp_path)  # where a mistaken local path would appear
    uri = "s3://mlpipeline/models/mnist-mlp"
    first = publish_model(model, uri, 0.9)
    assert first.promoted and read_champion(uri)["version"] == first.version
    assert storage.read_bytes(f"{uri}/{LATEST}").decode().strip() == first.version
    assert not publish_model(model, uri, 0.5).promoted  # worse: LATEST stays
    assert not (tmp_path / "s3:").exists()


def _special_files(folder):
    """Every kind of local path that is not a regular file, by name: what each one is refused as."""
    import os
    import socket

    os.mkfifo(folder / "fifo")
    (folder / "zero").symlink_to("/dev/zero")
    (folder / "folder").mkdir()
    (folder / "loop").symlink_to("loop")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(folder / "socket"))
    return {"fifo": "named pipe", "zero": "character device", "folder": "a folder", "loop": "symbolic links",
            "socket": "a socket", "missing": "not found"}


def test_a_local_read_refuses_what_is_not_a_regular_file_and_what_is_over_its_cap(tmp_path):
    for name, said in _special_files(tmp_path).items():
        with pytest.raises(storage.StorageError, match=said):
            storage.read_bytes(tmp_path / name, storage.RECORD)
    (tmp_path / "big.json").write_bytes(b"[" + b"0," * storage.MiB + b"0]")
    with pytest.raises(storage.StorageError, match=r"big.json is 2,097,155 bytes, more than the 1 MiB"):
        storage.read_bytes(tmp_path / "big.json", storage.RECORD)
    assert storage.read_bytes(tmp_path / "big.json", storage.METRICS)[:3] == b"[0,"


def test_an_object_over_its_cap_is_refused_before_its_bytes_are_read(store):
    storage.write_bytes(f"{store}/big", b"x" * 2000)
    with pytest.raises(storage.StorageError, match="is 2,000 bytes, more than the 1,000 bytes"):
        storage.read_bytes(f"{store}/big", 1000)
    assert storage.read_bytes(f"{store}/big", 2000) == b"x" * 2000
    storage.write_bytes(f"{store}/empty", b"")
    assert storage.read_bytes(f"{store}/empty", 10) == b""
    with pytest.raises(storage.StorageError, match="more than the 1,000 bytes"):
        storage.read_versioned(f"{store}/big", 1000)


def test_the_readme_states_each_cap_as_the_code_has_it():
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())

    def size(n):
        return f"{n >> 30} GiB" if n % (1 << 30) == 0 else f"{n >> 20} MiB"

    for label, cap in [("a `run.json`", storage.RUN_JSON), ("a marker", storage.RECORD),
                       ("a metrics file", storage.METRICS), ("`metadata.json`", storage.MANIFEST),
                       ("a schema", storage.SCHEMA), ("statistics", storage.STATISTICS), ("an image", storage.IMAGE),
                       ("a model's parameters", storage.PARAMS), ("any other artifact file", storage.FILE)]:
        assert f"{label} {size(cap)}" in readme, label
