"""One function through which everything we print from a failed request passes: no secret leaves in a message.

A server's error text is not ours: an auth proxy may quote back the credentials it
refused, an HTTP library puts a header's value into its exception ("Invalid header
value b'...'"), a URL may carry ``user:password@``. ``redact`` removes

- every secret this process holds and registered with ``remember`` (the bearer
  token and the cookie values read from files), in the forms an error text may
  carry them: as is, ``repr``/JSON-escaped and percent-encoded;
- the values of ``Authorization``, ``Proxy-Authorization``, ``Cookie`` and
  ``Set-Cookie`` headers, written as a header line (``Name: value``, RFC 9110
  §5.1 field lines) or as a mapping's key (a ``dict``/``HTTPHeaderDict`` repr, JSON);
- ``Bearer``/``Basic`` credentials (RFC 6750 §2.1, RFC 7617 §2) of 8 or more characters wherever they appear;
- the userinfo of any URL (``scheme://user:password@host``: RFC 3986 §3.2.1,
  "Use of the format user:password in the userinfo field is deprecated").

``one_line`` is ``redact`` plus what an ``error:`` line needs: one line, bounded.
Nothing here imports a client library; cluster commands and steps use it alike.
"""

from __future__ import annotations

import contextlib
import json
import re
from urllib.parse import quote

MASK = "***"
# Shorter registered values are not searched for: a one-character "secret" would blank every message. The
# patterns above still remove them where they appear as a header or a credential.
MIN_SECRET = 4

_known: set[str] = set()

_HEADERS = r"(?:proxy-authorization|authorization|set-cookie|cookie)"
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*@")
# 'Authorization': 'Bearer x'  /  "Cookie": "a=b"  (a dict or HTTPHeaderDict repr, JSON)
_QUOTED_HEADER = re.compile(rf"""(?P<key>(?P<q>['"]){_HEADERS}(?P=q)\s*:\s*)(?P<v>['"])(?:\\.|(?!(?P=v)).)*(?P=v)""",
                            re.IGNORECASE | re.DOTALL)
# Authorization: Bearer x   /   Cookie=a=b   (a header line, or a "name=value" in a message): to the end of the line
_HEADER_LINE = re.compile(rf"(?P<key>\b{_HEADERS}\s*[:=]\s*)[^\r\n]*", re.IGNORECASE)
# Any case of the scheme (RFC 9110 §11.1); a credential of 8 or more characters, so that prose ("the bearer token
# in FILE") stays readable: a shorter one the process holds is still removed as a known secret.
_CREDENTIAL = re.compile(r"\b(?P<kind>(?i:bearer|basic))\s+[A-Za-z0-9\-._~+/]{8,}=*")


def _forms(secret: str) -> set[str]:
    """The spellings of ``secret`` an error text may hold."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], quote(secret, safe=""), quote(secret)}
    with contextlib.suppress(UnicodeEncodeError):
        forms.add(repr(secret.encode())[2:-1])
    return {f for f in forms if len(f) >= MIN_SECRET}


def remember(*secrets: "str | None") -> None:
    """Secrets this process holds (a token, a password): never printed from now on."""
    for secret in secrets:
        if secret:
            _known.update(_forms(secret))


def remember_cookies(header: "str | None") -> None:
    """A ``Cookie`` header value (``name=value; name2=value2``): the whole of it and each value."""
    if not header:
        return
    remember(header)
    for pair in header.split(";"):
        name, _, value = pair.strip().partition("=")
        remember(value.strip('"'), pair.strip())


@contextlib.contextmanager
def holding(token: "str | None" = None, cookie: "str | None" = None, password: "str | None" = None):
    """Remember these secrets for the ``with`` block only."""
    before = set(_known)
    remember(token, password)
    remember_cookies(cookie)
    try:
        yield
    finally:
        _known.intersection_update(before)


def redact(text: object) -> str:
    """``text`` without any secret: known values, credential headers, ``Bearer``/``Basic`` credentials, URL userinfo."""
    text = str(text)
    for secret in sorted(_known, key=len, reverse=True):  # longest first: a cookie pair before its value
        text = text.replace(secret, MASK)
    text = _QUOTED_HEADER.sub(lambda m: f"{m.group('key')}{m.group('v')}{MASK}{m.group('v')}", text)
    text = _HEADER_LINE.sub(lambda m: f"{m.group('key')}{MASK}", text)
    text = _CREDENTIAL.sub(lambda m: f"{m.group('kind')} {MASK}", text)
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def one_line(text: object, limit: int = 300) -> str:
    """``redact(text)`` as one line of at most ``limit`` characters (redacted before it is cut: no half secret)."""
    line = " ".join(redact(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
