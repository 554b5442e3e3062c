"""Reading and writing under a local folder or an object-store URI (``gs://``, ``s3://``, ``minio://``).

Each store through its own client: google-cloud-storage (``STORAGE_EMULATOR_HOST``), boto3 (the standard AWS
variables; ``minio://``, Kubeflow's bundled store, is S3 at ``BUNDLED_ENDPOINT`` unless they name another). Every URI
is checked by ``artifacts.locations`` first; reads are bounded; writes are whole-object (locally a temp file renamed).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from artifacts import locations
from artifacts.redaction import one_line  # a server's error text may quote the credentials it refused

BUNDLED_SCHEME = "minio"
# Where Kubeflow's launcher finds its bundled store when nothing else is configured (2.17.0).
BUNDLED_ENDPOINT = "http://seaweedfs.kubeflow:9000"


class StorageError(OSError):
    """A location cannot be read or written (missing bucket, missing object, ...)."""


class PreconditionFailed(StorageError):
    """A compare-and-swap write lost: the object changed since it was read."""


def is_remote(uri: str) -> bool:
    """True for anything URI-like (``scheme:/...``): an object store, never a local path."""
    return locations.is_remote(str(uri))


def _parse(uri: str) -> "tuple[str, str, str, bool]":
    """``(kind, bucket, key, bundled)``: kind ``gs`` or ``s3``; ``bundled`` for Kubeflow's ``minio://`` store."""
    text = str(uri)
    bundled = locations.scheme(text) == BUNDLED_SCHEME and text.startswith(f"{BUNDLED_SCHEME}://")
    if bundled:
        text = "s3://" + text[len(f"{BUNDLED_SCHEME}://"):]
    kind, bucket, key = locations.split_uri(text, "location")
    return kind, bucket, key, bundled


def join(uri: str, *parts: str) -> str:
    if is_remote(uri):
        return "/".join([str(uri).rstrip("/"), *parts])
    return str(Path(uri, *parts))


def parent(uri: str) -> str:
    """The folder (prefix) holding ``uri``."""
    if is_remote(uri):
        head, _, _ = str(uri).rstrip("/").rpartition("/")
        _parse(head)  # still a URI with a bucket
        return head
    return str(Path(uri).parent)


def s3_endpoint(bundled: bool = False) -> "str | None":
    """The S3 endpoint the AWS variables name; for Kubeflow's bundled store, its default when they name none."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return endpoint or (BUNDLED_ENDPOINT if bundled else None)


def as_s3(uri: str) -> "tuple[str, str | None]":
    """A ``minio://`` URI as the ``s3://`` URI it is and its endpoint, as the launcher reads it; any other, with None."""
    kind, bucket, key, bundled = _parse(uri)
    if not bundled:
        return str(uri), None
    return f"s3://{bucket}" + (f"/{key}" if key else ""), s3_endpoint(bundled=True)


# ---- Cloud Storage (google-cloud-storage)

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

    _, bucket_name, name, _ = _parse(uri)
    bucket = client().bucket(bucket_name)
    try:
        if not bucket.exists(retry=_retry()):
            raise StorageError(f"bucket gs://{bucket_name} does not exist")
    except exceptions.GoogleAPICallError as e:
        raise StorageError(f"cannot reach gs://{bucket_name}: {one_line(e.message)}") from None
    return bucket, name


def _blob(uri: str):
    bucket, name = _bucket(uri)
    return bucket.blob(name)


def _retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY


# ---- S3 and S3-compatible stores (boto3)

_s3_clients: dict = {}


def s3_client(bundled: bool = False):
    """A boto3 S3 client; for Kubeflow's bundled store, at its default endpoint unless the AWS variables name one."""
    endpoint = s3_endpoint(bundled)
    key = (endpoint, os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    if key not in _s3_clients:
        import boto3
        from botocore.config import Config

        config = Config(retries={"mode": "standard", "max_attempts": 5},
                        # An S3-compatible server answers path-style requests (bucket in the path, not the host name).
                        s3={"addressing_style": "path"} if endpoint else {})
        region = key[2] or "us-east-1"
        _s3_clients[key] = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config)
    return _s3_clients[key]


def _s3(uri: str):
    _, bucket, key, bundled = _parse(uri)
    return s3_client(bundled), bucket, key


def _s3_error(e: Exception, uri: str) -> StorageError:
    """One line for what went wrong talking to S3."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(e, NoCredentialsError):
        return StorageError(f"no credentials for {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(on Kubeflow the pipeline wires the mlpipeline-minio-artifact secret into the step)")
    if isinstance(e, ClientError):
        code = e.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return StorageError(f"bucket of {uri} does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return StorageError(f"object not found: {uri}")
        message = e.response.get("Error", {}).get("Message", "") or code
        return StorageError(f"cannot use {uri}: {code}: {message}")
    return StorageError(f"cannot reach the S3 endpoint for {uri}: {one_line(str(e) or type(e).__name__)}")


def _s3_errors():
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _s3_code(e: Exception) -> str:
    return getattr(e, "response", {}).get("Error", {}).get("Code", "")


# ---- one interface


# The most this program reads of each kind of file (README, "Limits"); a bigger one is refused unread.
MiB = 1 << 20
RUN_JSON = 1 * MiB  # a local run's run.json
RECORD = 1 * MiB  # LATEST, a publish or candidate record, a checkpoint's state, a completion marker
METRICS = 16 * MiB  # metrics.json (history and confusion matrix), --test-metrics
MANIFEST = 16 * MiB  # a manifest, an artifact's metadata.json or config.json
SCHEMA = 16 * MiB  # validate's --schema
STATISTICS = 256 * MiB  # validate's --baseline-statistics, a Dataset's statistics
IMAGE = 64 * MiB  # one encoded image file
PARAMS = 4096 * MiB  # a model's params.npz or a checkpoint's parameters
FILE = 4096 * MiB  # any other file an artifact holds (a shard copied as it is)

_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _size_text(size: int) -> str:
    return f"{size // MiB} MiB" if size % MiB == 0 else f"{size:,} bytes"


def _too_big(location, size: int, limit: int) -> StorageError:
    return StorageError(f"{location} is {_size_text(size)}, more than the {_size_text(limit)} read for this kind of file")


def check_regular(location: "str | Path") -> None:
    """Refuse, by its name and without opening it, a local path that is not a regular file (links followed)."""
    try:
        mode = os.stat(location).st_mode
    except FileNotFoundError:
        raise StorageError(f"not found: {location}") from None
    except OSError as e:  # a symlink loop, a name too long, no permission
        raise StorageError(f"cannot read {location}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise StorageError(f"{location} is {_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file")


def _read_local(location: "str | Path", limit: int) -> bytes:
    check_regular(location)
    try:
        # O_NONBLOCK: a FIFO swapped in after the check cannot block the open; fstat then refuses it.
        fd = os.open(location, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StorageError(f"not found: {location}") from None
    except OSError as e:  # ENXIO: a socket swapped in
        raise StorageError(f"cannot read {location}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"{location} is {_KINDS.get(stat.S_IFMT(info.st_mode), 'not a regular file')}, "
                               "not a regular file")
        if info.st_size > limit:
            raise _too_big(location, info.st_size, limit)
        chunks, total = [], 0
        while total <= limit:  # the file may grow while it is read: never more than limit + 1 bytes
            chunk = os.read(fd, min(limit + 1 - total, 16 * MiB))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _too_big(location, total, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_bytes(location: "str | Path", limit: int = FILE) -> bytes:
    """The bytes of the file or object ``location``, refused (``StorageError``, one line) when it is not a regular
    file or holds more than ``limit`` bytes; an object's size is taken from its metadata before its bytes."""
    if not is_remote(location):
        return _read_local(location, limit)
    uri = str(location)
    if _parse(uri)[0] == "s3":
        s3, bucket, key = _s3(uri)
        try:
            answer = s3.get_object(Bucket=bucket, Key=key)  # the size comes in the headers, before any body is read
            if answer["ContentLength"] > limit:
                answer["Body"].close()
                raise _too_big(uri, answer["ContentLength"], limit)
            data = answer["Body"].read(limit + 1)
        except _s3_errors() as e:
            raise _s3_error(e, uri) from None
    else:
        from google.api_core import exceptions

        blob = _blob(uri)
        try:
            blob.reload(retry=_retry())
            if blob.size > limit:
                raise _too_big(uri, blob.size, limit)
            data = blob.download_as_bytes(start=0, end=limit, retry=_retry()) if blob.size else b""
        except exceptions.NotFound:
            raise StorageError(f"object not found: {uri}") from None
    if len(data) > limit:  # replaced by a bigger object between the two requests
        raise _too_big(uri, len(data), limit)
    return data


def exists(uri: str) -> bool:
    if not is_remote(uri):
        return Path(uri).exists()
    if _parse(uri)[0] == "s3":
        s3, bucket, key = _s3(uri)
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return True
        except _s3_errors() as e:
            if _s3_code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise _s3_error(e, uri) from None
    return _blob(uri).exists(retry=_retry())


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` so a reader sees the old content or the new, never a part."""
    if is_remote(uri):
        # One object upload is atomic; the write is idempotent, so retrying it is safe.
        if _parse(uri)[0] == "s3":
            s3, bucket, key = _s3(uri)
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=data)
            except _s3_errors() as e:
                raise _s3_error(e, uri) from None
            return
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
    if not is_remote(uri):
        Path(uri).unlink(missing_ok=True)
        return
    if _parse(uri)[0] == "s3":
        s3, bucket, key = _s3(uri)
        try:
            s3.delete_object(Bucket=bucket, Key=key)  # S3 answers 204 for a missing key too
        except _s3_errors() as e:
            raise _s3_error(e, uri) from None
        return
    from google.api_core import exceptions

    try:
        _blob(uri).delete(retry=_retry())
    except exceptions.NotFound:
        pass


def list_names(uri: str) -> list[str]:
    """Names (relative to ``uri``, ``/``-separated) of every file or object under the folder ``uri``."""
    if not is_remote(uri):
        root = Path(uri)
        if not root.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    if _parse(uri)[0] == "s3":
        s3, bucket, key = _s3(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))
        except _s3_errors() as e:
            raise _s3_error(e, uri) from None
    bucket, prefix = _bucket(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    return sorted(b.name[len(prefix) :] for b in client().list_blobs(bucket.name, prefix=prefix, retry=_retry()))


def read_versioned(uri: str, limit: int = RECORD) -> "tuple[bytes | None, int | str]":
    """``(bytes, version)`` of the object ``uri`` (at most ``limit`` bytes); ``(None, 0)`` when there is none.

    The version is what ``write_if_unchanged`` compares against: Cloud Storage's
    object generation (0 means "does not exist", as ``if_generation_match=0``), or
    S3's ETag, returned by the same GET that returns the bytes.
    """
    _parse(uri)
    if _parse(uri)[0] == "s3":
        s3, bucket, key = _s3(uri)
        try:
            answer = s3.get_object(Bucket=bucket, Key=key)
            if answer["ContentLength"] > limit:
                answer["Body"].close()
                raise _too_big(uri, answer["ContentLength"], limit)
            return answer["Body"].read(limit + 1), answer["ETag"]
        except _s3_errors() as e:
            if _s3_code(e) in ("NoSuchKey", "404"):
                return None, 0
            raise _s3_error(e, uri) from None
    from google.api_core import exceptions

    blob = _blob(uri)
    try:
        blob.reload(retry=_retry())
        generation = int(blob.generation)  # before the download, which resets it from the response's headers
        if blob.size > limit:
            raise _too_big(uri, blob.size, limit)
        return blob.download_as_bytes(if_generation_match=generation, retry=_retry()), generation
    except exceptions.NotFound:
        return None, 0
    except exceptions.PreconditionFailed:
        return read_versioned(uri, limit)  # replaced between the two calls: read the newer one


def write_if_unchanged(uri: str, data: bytes, version: "int | str") -> None:
    """Write ``data`` to the object ``uri`` only if it is still at ``version`` (from ``read_versioned``).

    The store checks the precondition on the server, so of two writers that read
    the same version exactly one succeeds; the other gets ``PreconditionFailed``
    and must read again. Cloud Storage: ``ifGenerationMatch`` (0: no live object).
    S3: ``If-None-Match: *`` (no object yet) or ``If-Match: <ETag>`` on PutObject
    (S3 User Guide, "Conditional writes"); a 409 ``ConditionalRequestConflict``
    (another conditional write in flight) is a lost race too.
    """
    if _parse(uri)[0] == "s3":
        s3, bucket, key = _s3(uri)
        condition = {"IfNoneMatch": "*"} if version in (0, None, "") else {"IfMatch": str(version)}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=data, **condition)
        except _s3_errors() as e:
            if _s3_code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise PreconditionFailed(f"{uri} changed while this write was being decided") from None
            raise _s3_error(e, uri) from None
        return
    from google.api_core import exceptions

    try:
        # A precondition makes the upload idempotent, so the default retry is safe.
        _blob(uri).upload_from_string(data, if_generation_match=int(version), retry=_retry())
    except exceptions.PreconditionFailed:
        raise PreconditionFailed(f"{uri} changed while this write was being decided") from None
