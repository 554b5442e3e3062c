"""The trust boundary for locations: every path, object-store URI, registry name and name part we are given.

Every step and command checks its locations here before any work; a bad one is one ``UserError`` line. Anything
URI-like (``scheme:``) is remote and never a local path; bucket, object and Vertex AI resource names follow the
stores' documented rules (cited where each is checked); a member of an artifact resolves, symlinks followed, inside it.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from mlp_core.errors import UserError

SCHEMES = ("gs", "s3", "minio")  # minio://: Kubeflow's bundled S3-compatible store (artifacts.storage)
_URI_LIKE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _shown(value: object, limit: int = 120) -> str:
    """``value`` as it may appear in an error line: repr'd (control characters escaped), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def scheme(location: str) -> "str | None":
    """``"gs"``, ``"s3"`` (or another scheme) for a URI-like text; None for a local path."""
    match = _URI_LIKE.match(str(location))
    return match.group("scheme").lower() if match else None


def is_remote(location: str) -> bool:
    """True for anything that looks like a URI (``scheme:...``): never to be used as a local path."""
    return scheme(str(location)) is not None


def check_gcs_bucket(bucket: str, flag: str = "location") -> str:
    longest = 222 if "." in bucket else 63
    if not 3 <= len(bucket) <= longest or not _GCS_BUCKET.match(bucket) or any(not 0 < len(p) <= 63 for p in bucket.split(".")):
        raise UserError(f"{flag}: {_shown(bucket)} is not a Cloud Storage bucket name (3-63 lowercase letters, "
                            "digits, '-', '_' or '.', starting and ending with a letter or digit)")
    if _is_ip(bucket) or bucket.startswith("goog") or "google" in bucket:
        raise UserError(f"{flag}: {_shown(bucket)} is not a Cloud Storage bucket name (an IP address, a 'goog' "
                            "prefix and 'google' are reserved)")
    return bucket


def check_s3_bucket(bucket: str, flag: str = "location") -> str:
    if not _S3_BUCKET.match(bucket) or ".." in bucket or _is_ip(bucket) \
            or bucket.startswith(("xn--", "sthree-", "amzn-s3-demo-")) \
            or bucket.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")):
        raise UserError(f"{flag}: {_shown(bucket)} is not an S3 bucket name (3-63 lowercase letters, digits, "
                            "'.' or '-', starting and ending with a letter or digit, no '..')")
    return bucket


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def check_object_path(path: str, flag: str = "location", what: str = "object path") -> str:
    """A relative ``/``-separated name with no empty, ``.`` or ``..`` part and no control character."""
    if not isinstance(path, str):
        raise UserError(f"{flag}: {what} must be text, got {_shown(path)}")
    if _CONTROL.search(path) or "\\" in path:
        raise UserError(f"{flag}: {what} {_shown(path)} holds a control character or a backslash")
    if len(path.encode("utf-8", "surrogatepass")) > 1024:
        raise UserError(f"{flag}: {what} {_shown(path)} is longer than 1024 bytes")
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise UserError(f"{flag}: {what} {_shown(path)} has an empty, '.' or '..' part; "
                            "it must be a relative name inside its location")
    return path


def split_uri(uri: str, flag: str = "location") -> tuple[str, str, str]:
    """``(scheme, bucket, path)`` of a well-formed ``gs://`` or ``s3://`` URI (``path`` may be empty)."""
    kind = scheme(uri)
    if kind not in SCHEMES or not str(uri).startswith(f"{kind}://"):
        raise UserError(f"{flag}: {_shown(uri)} is not a location this program reads or writes: "
                            "give a local path, gs://BUCKET/PATH, s3://BUCKET/PATH or minio://BUCKET/PATH")
    bucket, _, path = str(uri)[len(kind) + 3:].partition("/")
    if not bucket:
        raise UserError(f"{flag}: {_shown(uri)} names no bucket ({kind}://BUCKET/PATH)")
    (check_gcs_bucket if kind == "gs" else check_s3_bucket)(bucket, flag)  # minio:// is S3 behind it
    path = path.rstrip("/")
    if path:
        check_object_path(path, flag)
    return kind, bucket, path


def check_location(location: "str | Path", flag: str = "location") -> str:
    """A valid local path or ``gs://``/``s3://`` URI, as given (a trailing ``/`` of a URI dropped); else one line."""
    text = str(location)
    if not text:
        raise UserError(f"{flag}: an empty location")
    if is_remote(text):
        kind, bucket, path = split_uri(text, flag)
        return f"{kind}://{bucket}" + (f"/{path}" if path else "")
    if _CONTROL.search(text):
        raise UserError(f"{flag}: {_shown(text)} holds a control character")
    if text.startswith("projects/"):
        raise UserError(f"{flag}: {_shown(text)} looks like a Vertex AI resource name, which is not a location "
                            "here (for a local folder of that name, write ./" + text + ")")
    return text


def check_local(location: "str | Path", flag: str = "location") -> str:
    """A local path only: a URI-like text is refused (this input cannot be read from an object store)."""
    text = check_location(location, flag)
    if is_remote(text):
        raise UserError(f"{flag}: {_shown(text)} must be a local path here")
    return text


def check_segment(name: str, flag: str, what: str = "name") -> str:
    """One path segment we build into a path or URL: ``[A-Za-z0-9._-]``, 1-128 characters, not ``.``/``-`` first."""
    if not isinstance(name, str) or not _SEGMENT.match(name):
        raise UserError(f"{flag}: {_shown(name)} is not a valid {what} (1-128 letters, digits, '.', '_' or '-', "
                            "not starting with '.' or '-')")
    return name


def join(root: str, *parts: str, flag: str = "location") -> str:
    """``root`` joined with ``parts``, each checked as an object path: the result never leaves ``root`` (locally,
    symlinks followed: nothing is read or written through a link planted out of it)."""
    for part in parts:
        check_object_path(part, flag, "name")
    if is_remote(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(member(root, "/".join(parts), flag))


def resolve(path: "str | Path", flag: str = "location") -> Path:
    """``path`` absolute, symlinks followed; a symlink loop is a ``UserError``, not a ``RuntimeError``."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a loop, 3.13 OSError
        raise UserError(f"{flag} {_shown(str(path))} is a symlink loop (or a link that cannot be followed)") from None


def member(folder: "str | Path", name: str, flag: str = "artifact") -> Path:
    """The file ``name`` (listed in a marker or manifest) of the local ``folder``, proven to lie inside it.

    ``name`` must be a relative, ``/``-separated member name (``check_object_path``),
    and, symlinks followed, resolve inside ``folder``: a marker is input, and a name
    such as ``../victim.txt`` or a link out of the folder is refused, never read or deleted.
    """
    check_object_path(name, f"{flag} {folder}", "member")
    folder = Path(folder)
    path = folder / name
    root = resolve(folder, flag)
    resolved = resolve(path, f"{flag} {folder}: member")
    if resolved != root and root not in resolved.parents:
        raise UserError(f"{flag} {folder}: member {_shown(name, 80)} resolves outside it, to {_shown(str(resolved), 80)}")
    return path


# Vertex AI resource names (https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects.locations.models):
# a project is its id (6-30 of [a-z0-9-], a letter first, no '-' last: Resource Manager's rule) or its number;
# a location a region (us-central1, europe-west4); a model id at most 63 of [a-z0-9_-], the first neither a digit
# nor '-' (aiplatform_v1 UploadModelRequest.model_id).
PROJECT = r"(?:[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})"
REGION = r"[a-z]+-[a-z]+[0-9]+"
REGISTRY_MODEL = re.compile(rf"^projects/(?P<project>{PROJECT})/locations/(?P<location>{REGION})"
                            r"/models/(?P<model>[a-z_][a-z0-9_-]{0,62})$")


def is_resource_name(text: str) -> bool:
    """A text that means to be a Vertex AI resource name (``projects/...``)."""
    return str(text).startswith("projects/")


def check_registry_model(name: str, flag: str = "--publish-uri") -> re.Match:
    """A Vertex AI Model Registry model ``projects/P/locations/L/models/M``, each part by its documented rule."""
    match = REGISTRY_MODEL.match(str(name))
    if not match:
        raise UserError(
            f"{flag}: {_shown(name)} is not a Vertex AI Model Registry model name: projects/PROJECT/locations/REGION/"
            "models/MODEL, PROJECT a project id (6-30 of a-z, 0-9, '-') or number, REGION such as us-central1, MODEL "
            "at most 63 of a-z, 0-9, '_', '-' not starting with a digit or '-'")
    return match


def check_publish_target(target: str, flag: str = "--publish-uri") -> str:
    """A publish location: a Model Registry model name, or a local folder, ``gs://`` or ``s3://`` location."""
    if is_resource_name(target):
        check_registry_model(target, flag)
        return str(target)
    return check_location(target, flag)


def check_flags(given: "dict[str, str | Path | None]", local: "tuple[str, ...] | list[str]" = ()) -> None:
    """Check every location a command was given, before any work: ``{flag: value}``; unset values skipped.

    Flags in ``local`` must be local paths (their step cannot read or write an object store).
    """
    for flag, value in given.items():
        if value is None or (value == "" and flag not in local):
            continue
        (check_local if flag in local else check_location)(value, flag)
