"""Which Vertex AI API endpoint the project's clients call, and as whom.

``JAX_MLP_VERTEX_ENDPOINT`` names another endpoint than the regional
``<location>-aiplatform.googleapis.com`` (a Private Service Connect one; the
tests' stand-ins). A plain ``http://`` endpoint is never Vertex AI itself but a
local stand-in, which wants no Google identity: it gets anonymous credentials.
Used by the Model Registry publish target, the track step and the submit and
schedule commands, all over REST.
"""

from __future__ import annotations

import os

ENDPOINT_ENV = "JAX_MLP_VERTEX_ENDPOINT"


def endpoint() -> "tuple[str | None, object | None]":
    """``(endpoint or None for the default, credentials or None for the default)``."""
    given = os.environ.get(ENDPOINT_ENV) or None
    if given and given.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        return given, AnonymousCredentials()
    return given, None
