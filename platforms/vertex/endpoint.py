"""Which Vertex AI API endpoint the project's clients call, and as whom.

``JAX_MLP_VERTEX_ENDPOINT`` names another endpoint than ``<location>-aiplatform.googleapis.com``; a plain ``http://``
one is a local stand-in and gets anonymous credentials, any other Application Default Credentials, looked up once:
without them, one line saying how to provide them (``MissingCredentialsError``).
"""

from __future__ import annotations

import os

from artifacts.bounded_http import check_url

ENDPOINT_ENV = "JAX_MLP_VERTEX_ENDPOINT"
# The scope the google-cloud-aiplatform clients ask for (aiplatform_v1 ModelServiceClient AUTH_SCOPES).
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# How Application Default Credentials are found, in google.auth.default()'s order
# (google/auth/_default.py: GOOGLE_APPLICATION_CREDENTIALS, then gcloud's ADC file, then the metadata server).
HOW_TO_PROVIDE = ("run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS to a service "
                  "account key file, or run on Google Cloud with a service account attached")

try:
    from google.auth.exceptions import DefaultCredentialsError as _DefaultCredentialsError
except ImportError:  # google-auth comes with the Google Cloud clients; without them there is nothing to authenticate
    _DefaultCredentialsError = RuntimeError  # type: ignore[misc,assignment]


class MissingCredentialsError(_DefaultCredentialsError):
    """No usable Google credentials; the message (one line) says how to provide them."""


def credentials_message(error: BaseException) -> str:
    """One line for a google.auth error: what went wrong, and how to provide credentials."""
    if isinstance(error, MissingCredentialsError):
        return str(error)
    first = " ".join(str(error).split())[:200] or type(error).__name__
    if type(error).__name__ == "DefaultCredentialsError":
        return f"no Google credentials ({first}): {HOW_TO_PROVIDE}"
    return f"Google credentials could not be used ({type(error).__name__}: {first}): {HOW_TO_PROVIDE}"


def default_credentials():
    """Application Default Credentials for Vertex AI, or ``MissingCredentialsError`` (one line)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, _ = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as e:
        raise MissingCredentialsError(credentials_message(e)) from None
    return credentials


def endpoint() -> "tuple[str | None, object | None]":
    """``(endpoint or None for the default, the credentials to call it with)``."""
    given = os.environ.get(ENDPOINT_ENV) or None
    if given:
        check_url(given, ENDPOINT_ENV)  # user:password@ refused before any client looks the host up
    if given and given.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        return given, AnonymousCredentials()
    return given, default_credentials()
