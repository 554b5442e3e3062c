"""Reading and writing under a local folder or a ``gs://`` URI, through one interface.

Every place our own code touches Cloud Storage goes through google-cloud-storage
(never path surgery turning ``gs://`` into ``/gcs/``), with its retry policy for
transient errors. ``STORAGE_EMULATOR_HOST`` points the client at an emulator.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class StorageError(OSError):
    """A location cannot be read or written (missing bucket, missing object, ...)."""


def is_gcs(uri: str) -> bool:
    return str(uri).startswith("gs://")


def join(uri: str, *parts: str) -> str:
    if is_gcs(uri):
        return "/".join([str(uri).rstrip("/"), *parts])
    return str(Path(uri, *parts))


def _split(uri: str) -> tuple[str, str]:
    bucket, _, name = str(uri)[len("gs://") :].partition("/")
    if not bucket:
        raise StorageError(f"not a gs:// URI with a bucket: {uri}")
    return bucket, name


_client = None


def client():
    """A google-cloud-storage client (anonymous against an emulator)."""
    global _client
    if _client is None:
        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            _client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"), credentials=AnonymousCredentials())
        else:
            _client = storage.Client()
    return _client


def _blob(uri: str):
    from google.api_core import exceptions

    bucket_name, name = _split(uri)
    bucket = client().bucket(bucket_name)
    try:
        if not bucket.exists(retry=_retry()):
            raise StorageError(f"bucket gs://{bucket_name} does not exist")
    except exceptions.GoogleAPICallError as e:
        raise StorageError(f"cannot reach gs://{bucket_name}: {e.message}") from None
    return bucket.blob(name)


def _retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY


def read_bytes(uri: str) -> bytes:
    """The bytes at ``uri``; ``StorageError`` when missing."""
    if not is_gcs(uri):
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"not found: {uri}") from None
    from google.api_core import exceptions

    try:
        return _blob(uri).download_as_bytes(retry=_retry())
    except exceptions.NotFound:
        raise StorageError(f"object not found: {uri}") from None


def exists(uri: str) -> bool:
    if not is_gcs(uri):
        return Path(uri).exists()
    return _blob(uri).exists(retry=_retry())


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` so a reader sees the old content or the new, never a part."""
    if is_gcs(uri):
        # One object upload is atomic; the write is idempotent, so retrying it is safe.
        _blob(uri).upload_from_string(data, retry=_retry())
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def upload_tree(local_dir: str | Path, uri: str) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri`` (same relative names); returns them."""
    local_dir = Path(local_dir)
    names = sorted(str(p.relative_to(local_dir)) for p in local_dir.rglob("*") if p.is_file())
    for name in names:
        write_bytes(join(uri, *Path(name).parts), (local_dir / name).read_bytes())
    return names


def download_tree(uri: str, local_dir: str | Path) -> None:
    """Copy every object under ``uri`` into ``local_dir``."""
    local_dir = Path(local_dir)
    if not is_gcs(uri):
        import shutil

        shutil.copytree(uri, local_dir, dirs_exist_ok=True)
        return
    bucket_name, prefix = _split(uri)
    prefix = prefix.rstrip("/") + "/"
    _blob(uri)  # checks the bucket
    for blob in client().list_blobs(bucket_name, prefix=prefix, retry=_retry()):
        target = local_dir / blob.name[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target), retry=_retry())
