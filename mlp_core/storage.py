"""Reading and writing under a local folder or a ``gs://`` URI, through one interface.

Every place our own code touches Cloud Storage goes through google-cloud-storage
(never path surgery turning ``gs://`` into ``/gcs/``), with its retry policy for
transient errors. ``STORAGE_EMULATOR_HOST`` points the client at an emulator.

Writes are whole-object (a reader sees the old bytes or the new, never a part):
an object upload on Cloud Storage, a temp file + file rename locally (a file
rename works on Cloud Storage FUSE too; a folder rename does not).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class StorageError(OSError):
    """A location cannot be read or written (missing bucket, missing object, ...)."""


class PreconditionFailed(StorageError):
    """A compare-and-swap write lost: the object changed since it was read."""


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


def _bucket(uri: str):
    from google.api_core import exceptions

    bucket_name, name = _split(uri)
    bucket = client().bucket(bucket_name)
    try:
        if not bucket.exists(retry=_retry()):
            raise StorageError(f"bucket gs://{bucket_name} does not exist")
    except exceptions.GoogleAPICallError as e:
        raise StorageError(f"cannot reach gs://{bucket_name}: {e.message}") from None
    return bucket, name


def _blob(uri: str):
    bucket, name = _bucket(uri)
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
        os.chmod(tmp, 0o644)  # mkstemp makes it private; Cloud Storage FUSE ignores this (0644 anyway)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def delete(uri: str) -> None:
    """Delete the one file or object ``uri`` (missing is fine); never a folder."""
    if not is_gcs(uri):
        Path(uri).unlink(missing_ok=True)
        return
    from google.api_core import exceptions

    try:
        _blob(uri).delete(retry=_retry())
    except exceptions.NotFound:
        pass


def list_names(uri: str) -> list[str]:
    """Names (relative to ``uri``, ``/``-separated) of every file or object under the folder ``uri``."""
    if not is_gcs(uri):
        root = Path(uri)
        if not root.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    bucket, prefix = _bucket(uri)
    prefix = prefix.rstrip("/") + "/"
    return sorted(b.name[len(prefix) :] for b in client().list_blobs(bucket.name, prefix=prefix, retry=_retry()))


def read_versioned(uri: str) -> tuple[bytes | None, int]:
    """``(bytes, generation)`` of the object ``uri``; ``(None, 0)`` when there is none.

    The generation is what ``write_if_unchanged`` compares against (Cloud Storage's
    object generation; 0 means "does not exist", as ``if_generation_match=0``).
    """
    from google.api_core import exceptions

    blob = _blob(uri)
    try:
        blob.reload(retry=_retry())
        generation = int(blob.generation)  # before the download, which resets it from the response's headers
        return blob.download_as_bytes(if_generation_match=generation, retry=_retry()), generation
    except exceptions.NotFound:
        return None, 0
    except exceptions.PreconditionFailed:
        return read_versioned(uri)  # replaced between the two calls: read the newer one


def write_if_unchanged(uri: str, data: bytes, generation: int) -> None:
    """Write ``data`` to the object ``uri`` only if its generation is still ``generation``.

    Cloud Storage checks ``if_generation_match`` on the server, so of two writers
    that read the same generation exactly one succeeds; the other gets
    ``PreconditionFailed`` and must read again.
    """
    from google.api_core import exceptions

    try:
        # A precondition makes the upload idempotent, so the default retry is safe.
        _blob(uri).upload_from_string(data, if_generation_match=generation, retry=_retry())
    except exceptions.PreconditionFailed:
        raise PreconditionFailed(f"{uri} changed while this write was being decided") from None


def upload_tree(local_dir: str | Path, uri: str) -> list[str]:
    """Copy every file under ``local_dir`` to ``uri`` (same relative names); returns them."""
    local_dir = Path(local_dir)
    names = sorted(p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file())
    for name in names:
        write_bytes(join(uri, *name.split("/")), (local_dir / name).read_bytes())
    return names
