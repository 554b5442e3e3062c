"""An S3-compatible server on loopback for the tests: moto's server, one request at a time.

No S3 and no Kubeflow bundled store (SeaweedFS) run in these tests; moto (PyPI
``moto[server]``, maintained) answers the S3 REST API that boto3 speaks, with
state, from its own werkzeug app (``moto/moto_server/threaded_moto_server.py``
``ThreadedMotoServer`` builds the same app). Verified with moto 5.2.1: a PutObject
with ``If-None-Match: *`` on an existing key, or with a stale ``If-Match`` ETag,
is answered 412 PreconditionFailed, as S3 documents ("Conditional writes",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
What moto lacks is S3's atomicity of that check: its handler compares the ETag
and then writes (``moto/s3/responses.py``, no lock) while its server runs each
request in a thread of its own. This module serialises the requests (a lock
around the app), so check-then-write is atomic here as it is on S3, the way
``gcs_emulator_stand_in.py`` relies on gcp-storage-emulator's one-at-a-time server.

    python tests/s3_server.py --host 127.0.0.1 --port PORT
"""

from __future__ import annotations

import argparse
import sys
import threading


def serialized(app):
    """``app`` answering one request at a time (the whole response, body included, under one lock)."""
    lock = threading.Lock()

    def serve(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    return serve


def main(argv: list[str]) -> int:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    app = serialized(DomainDispatcherApplication(create_backend_app))
    make_server(args.host, args.port, app, threaded=True).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
