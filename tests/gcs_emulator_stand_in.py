"""gcp-storage-emulator, plus the one Cloud Storage semantic it lacks: generation preconditions.

No Cloud Storage runs in these tests; gcp-storage-emulator answers the JSON API
that google-cloud-storage speaks. It ignores ``ifGenerationMatch`` (verified with
2026.7.19: a second upload with ``ifGenerationMatch=0`` overwrote the object),
and publish's compare-and-swap of ``LATEST`` depends on it. Cloud Storage
documents the semantics ("Request preconditions",
https://cloud.google.com/storage/docs/request-preconditions): an upload or a
download with ``ifGenerationMatch=G`` succeeds only if the object's live
generation is G (0: no live object), else HTTP 412 Precondition Failed. This
module adds exactly that to the emulator's upload and download handlers and
starts it. The emulator serves one request at a time (``http.server.HTTPServer``),
so check-then-write here is atomic as it is on the real service.

Mirrors: oittaa/gcp-storage-emulator 2026.7.19 ``gcp_storage_emulator/handlers/objects.py`` (the handlers
it wraps) and Cloud Storage's documented precondition semantics (the service's source is closed: unverified
beyond that documentation).

    python tests/gcs_emulator_stand_in.py --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import argparse
import functools
import sys
from http import HTTPStatus

from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects


def _object_name(request) -> str | None:
    if "name" in request.query:
        return request.query["name"][0]
    if "object_id" in (request.params or {}):
        return request.params["object_id"]
    data = request.data
    if isinstance(data, dict):
        meta = data.get("meta") if "meta" in data else data
        if isinstance(meta, dict):
            return meta.get("name")
    return None


def _live_generation(storage, bucket: str, name: str) -> int:
    try:
        return int(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return 0


def with_generation_precondition(handler):
    """``handler`` behind Cloud Storage's ``ifGenerationMatch`` check (412 when it fails)."""

    @functools.wraps(handler)
    def checked(request, response, storage, *args, **kwargs):
        wanted = request.query.get("ifGenerationMatch")
        name = _object_name(request)
        if wanted and name is not None:
            live = _live_generation(storage, request.params["bucket_name"], name)
            if int(wanted[0]) != live:
                response.status = HTTPStatus.PRECONDITION_FAILED
                response.json({"error": {"code": 412, "message": "At least one of the pre-conditions you specified did not hold.",
                                         "errors": [{"reason": "conditionNotMet", "message": "Precondition Failed"}]}})
                return None
        return handler(request, response, storage, *args, **kwargs)

    return checked


def install() -> None:
    """Wrap the emulator's upload and download handlers, wherever it looks them up."""
    wrapped = {objects.insert: with_generation_precondition(objects.insert),
               objects.download: with_generation_precondition(objects.download)}
    server.HANDLERS = tuple((regex, {m: wrapped.get(h, h) for m, h in handlers.items()}) for regex, handlers in server.HANDLERS)
    # Module globals the emulator also calls through: the router's fallback for uploads
    # without the /upload prefix, and ``get`` with ``alt=media``.
    objects.insert, objects.download = wrapped[objects.insert], wrapped[objects.download]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    install()
    emulator = server.create_server(args.host, args.port, in_memory=True)
    emulator.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
