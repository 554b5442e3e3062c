"""Every HTTP answer this project reads: at most ``MAX_ANSWER`` bytes, within one overall deadline per request.

``request`` (urllib) shuts each socket down at the deadline, which ends a read however slowly the server sends;
``bound_pool`` puts the same bounds under a urllib3 pool (kfp_server_api's, kubernetes').
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from artifacts import redaction

MAX_ANSWER = 64 << 20  # a served answer for 100,000 images is about 30 MB
DEADLINE = 60.0
_CHUNK = 1 << 16


class HttpError(OSError):
    """A request failed, or its answer was too large or too late (an OSError, as a failed connection is)."""


def check_url(url: str, flag: str) -> str:
    """``url`` as given, refused (unprinted) when it carries a user name or password: never sent, never looked up."""
    netloc = urlsplit(str(url)).netloc
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        redaction.remember(userinfo, userinfo.partition(":")[2])
        raise HttpError(f"{flag} {redaction.redact(str(url))} carries a user name or password: it would be sent in "
                        "a DNS query and printed in every error line; give the URL without it")
    return url


class Deadline:
    """One request's overall deadline; at it every socket given to ``watch`` is shut down (a blocked read ends)."""

    def __init__(self, seconds: float):
        self.seconds, self.at = seconds, time.monotonic() + seconds
        self._timers: list[threading.Timer] = []

    def left(self) -> float:
        return max(self.at - time.monotonic(), 0.001)

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def watch(self, sock) -> None:
        timer = threading.Timer(self.left(), _shut, [sock])
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for timer in self._timers:
            timer.cancel()


def _shut(sock) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: TLS's own shutdown would talk first
    except OSError:  # already closed
        pass


def read_body(response, url: str, deadline: Deadline, limit: int = MAX_ANSWER) -> bytes:
    """The body of ``response`` (``read1``: what has arrived), refused past ``limit`` bytes or ``deadline``."""
    declared = (response.headers.get("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > limit:  # refused before its first byte
        raise HttpError(f"{url} answered {_size(int(declared))}; the limit is {_size(limit)}")
    parts, size = [], 0
    try:
        while chunk := response.read1(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise HttpError(f"{url} answered more than {_size(limit)}; the limit is {_size(limit)}")
            if deadline.passed():
                break
            parts.append(chunk)
        if getattr(response, "length", None):  # http.client: fewer bytes than Content-Length, then the end
            raise http.client.IncompleteRead(b"", response.length)
    except HttpError:
        raise
    except Exception as e:  # http.client's and urllib3's errors for a broken answer, a socket shut at the deadline
        if not deadline.passed():
            why = repr(e) if isinstance(e, http.client.IncompleteRead) else str(e) or type(e).__name__
            raise HttpError(f"{url} broke off its answer: {redaction.one_line(why, 120)}") from None
    if deadline.passed():
        raise HttpError(f"{url} did not answer within {deadline.seconds:g} s")
    return b"".join(parts)


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"


def _watched(base, deadline: Deadline):
    class Watched(base):
        def connect(self):
            super().connect()
            deadline.watch(self.sock)

    return Watched


def request(url: str, data: "bytes | None" = None, headers: "dict | None" = None, method: str = "GET",
            timeout: float = DEADLINE, limit: int = MAX_ANSWER) -> "tuple[int, bytes]":
    """``(status, body)`` of one request (any status: an error's body is read under the same bounds)."""
    check_url(url, "URL")
    with Deadline(timeout) as deadline:

        class Plain(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(_watched(http.client.HTTPConnection, deadline), req)

        class Tls(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(_watched(http.client.HTTPSConnection, deadline), req,
                                    context=ssl.create_default_context())

        opener = urllib.request.build_opener(Plain, Tls)
        try:
            response = opener.open(urllib.request.Request(url, data=data, headers=headers or {}, method=method),
                                   timeout=deadline.left())
        except urllib.error.HTTPError as e:
            response = e
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            if deadline.passed() or isinstance(getattr(e, "reason", e), TimeoutError):
                raise HttpError(f"{url} did not answer within {timeout:g} s") from None
            reason = getattr(e, "reason", None) or e
            raise HttpError(f"cannot reach {url}: {redaction.one_line(str(reason), 120)}") from None
        with response:
            return response.status, read_body(response, url, deadline, limit)


def bound_pool(pool) -> None:
    """Bound every answer read through the urllib3 ``pool`` (a PoolManager or ProxyManager) in place."""
    import urllib3

    if getattr(pool, "bounded", False):
        return
    send = pool.request

    def bounded(method, url, *args, preload_content=True, timeout=None, **kwargs):
        with Deadline(DEADLINE) as deadline:
            try:  # one try (a retry would start the deadline again); redirects followed as before
                response = send(method, url, *args, preload_content=False,
                                retries=urllib3.Retry(total=None, connect=0, read=0, other=0, redirect=3),
                                timeout=urllib3.Timeout(connect=deadline.left(), read=deadline.left()), **kwargs)
            except urllib3.exceptions.MaxRetryError as e:
                timeouts = (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ConnectTimeoutError)
                if not isinstance(e.reason, timeouts) or isinstance(e.reason, urllib3.exceptions.NewConnectionError):
                    raise  # refused, unknown host, TLS: the caller words it
                raise HttpError(f"{redaction.one_line(url.split('?')[0], 120)} did not answer within "
                                f"{deadline.seconds:g} s") from None
            if response.connection is not None and response.connection.sock is not None:
                deadline.watch(response.connection.sock)
            try:
                body = read_body(response, redaction.one_line(url.split("?")[0], 120), deadline, MAX_ANSWER)
            except HttpError:
                response.close()  # the rest unread: never back into the pool
                raise
            finally:
                response.release_conn()
        # read1 decoded the body already: the copy hands it out as it is
        return urllib3.HTTPResponse(body=body, headers=response.headers, status=response.status,
                                    reason=response.reason, preload_content=False, decode_content=False)

    pool.request, pool.bounded = bounded, True
