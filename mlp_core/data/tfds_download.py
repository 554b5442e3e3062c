"""A tfds dataset that is not prepared yet: refused in one line when its download hosts give no HTTP answer (one
``HEAD`` each through ``requests``, as tfds's downloader, bounded by ``PROBE_TIMEOUT_S``), and after a failed download
only what that attempt left half-written is removed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import tempfile
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
from requests.utils import get_environ_proxies, select_proxy

from mlp_core.errors import UserError

PROBE_TIMEOUT_S = 3.0
# tfds's own bucket, which serves the datasets that list no download URL
GCS_URL = "https://storage.googleapis.com/tfds-data/"
# tfds writes a download as '<name>.tmp.<uuid hex>', a dataset into '<dataset>/incomplete.<6 chars>_<version>'
_TMP_MARK = ".tmp."
_INCOMPLETE_PREFIX = "incomplete."
# Loggers that flood stderr while tfds retries downloads (urllib3) or looks at a data dir (absl)
_NOISY_LOGGERS = ("urllib3", "absl")


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Only errors from urllib3 and absl (tfds logs through absl) while inside."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def own_temp_folder() -> Iterator[None]:
    """Python's temporary files (tfds leaks a ``tmp*tfds`` folder per builder) go to a folder of ours, removed after.

    Sets ``tempfile.tempdir`` for the process meanwhile: call it from the main thread, around tfds calls only.
    """
    with tempfile.TemporaryDirectory(prefix="mlp-tfds-") as folder:
        saved, tempfile.tempdir = tempfile.tempdir, folder
        try:
            yield
        finally:
            tempfile.tempdir = saved


def download_urls(builder) -> list[str]:
    """The URLs tfds would fetch for ``builder``: those of its checksums file (``url_infos``), gs:// ones as their
    https://storage.googleapis.com address; tfds's bucket when the builder lists none."""
    urls = []
    for url in builder.url_infos or {}:
        if url.startswith("gs://"):
            url = "https://storage.googleapis.com/" + url[len("gs://"):]
        urls.append(url)
    return urls or [GCS_URL]


def unreachable_host(urls: list[str], timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why one of the hosts of ``urls`` gives no answer within ``timeout`` seconds, or None when every host answers.

    One request per host (scheme, host, port), all at once in daemon threads, so the wait is ``timeout`` at most
    even when name resolution hangs (urllib3's timeouts do not cover it).
    """
    first_per_host: dict[tuple[str, str], str] = {}
    for url in urls:
        parts = urlsplit(url)
        first_per_host.setdefault((parts.scheme, parts.netloc), url)
    results: dict[str, str | None] = {}
    threads = [threading.Thread(target=_probe, args=(url, timeout, results), daemon=True)
               for url in first_per_host.values()]
    for thread in threads:
        thread.start()
    for thread, url in zip(threads, first_per_host.values()):
        thread.join(max(0.0, timeout + 0.5))
        if url not in results:
            return f"{_where(url)}: no answer within {timeout:g} s"
        if results[url] is not None:
            return results[url]
    return None


def _probe(url: str, timeout: float, results: dict[str, str | None]) -> None:
    try:
        if url.startswith("ftp"):  # tfds fetches ftp:// with urllib (download/downloader.py _open_url)
            parts = urlsplit(url)
            socket.create_connection((parts.hostname, parts.port or 21), timeout=timeout).close()
        else:
            # No retries (a plain Session's adapters have max_retries=0); any status is an answer.
            requests.head(url, timeout=timeout, allow_redirects=False).close()
        results[url] = None
    except Exception as e:  # noqa: BLE001 - any failure to get an answer is the reason
        results[url] = f"{_where(url)}: {_root_cause(e)}"


def _where(url: str) -> str:
    """``host:port``, and the proxy ``requests`` would go through for it (HTTP(S)_PROXY, NO_PROXY honoured)."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or {'https': 443, 'ftp': 21}.get(parts.scheme, 80)}"
    if parts.scheme.startswith("http"):
        if proxy := select_proxy(url, get_environ_proxies(url)):
            where += f" through the proxy {proxy}"
    return where


def _root_cause(error: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error (e.g. ``[Errno -2] Name or service not known``)."""
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in error.args if isinstance(a, BaseException)), None)
        inner = inner or error.__cause__
        if inner is None:
            break
        error = inner
    text = str(error).strip()
    if "):" in text and text.startswith(("HTTPConnection(", "HTTPSConnection(")):  # urllib3 prefixes the pool
        text = text.split("):", 1)[1].strip()
    return text.splitlines()[0] if text else type(error).__name__


def manual_dir_problem(builder) -> str | None:
    """For a dataset whose files one downloads by hand: why tfds would not find them (None when it would)."""
    if not builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        return None
    # tfds's default manual folder; missing or empty is an error there
    manual = builder.data_dir_root / "downloads" / "manual"
    if manual.exists() and any(manual.iterdir()):
        return None
    return (f"{builder.name} is not prepared in {builder.data_dir_root} and its files must be downloaded by hand: "
            f"put them in {manual} (https://www.tensorflow.org/datasets/catalog/{builder.name} says which), "
            "then run again")


def how_to_prepare(builder, display_name: str) -> str:
    """How to get ``builder``'s dataset prepared in its data dir without this step downloading it."""
    root = builder.data_dir_root
    if builder.name == "mnist":
        return f"prepare it here with no network: python -m components.ingest seed-tfds-cache --data-dir {root}"
    return ("prepare it on a machine with a network, python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{display_name}', data_dir='DIR').download_and_prepare()\", then copy DIR/{builder.name} "
            f"into {root}")


@contextlib.contextmanager
def removing_leftovers(builder) -> Iterator[None]:
    """On failure inside, remove what tfds half-wrote in this attempt and nothing else: new ``*.tmp.*`` downloads,
    a new ``incomplete.*`` dataset folder, then the folders this attempt created that are left empty. Finished
    downloads stay (tfds reuses them next time)."""
    roots = [builder.data_dir_root / "downloads", builder.data_dir_root / builder.name]
    before = _listing(roots)
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):  # the attempt's own error is the one to report
            _remove_leftovers(_listing(roots) - before)
        raise


def _remove_leftovers(new: set) -> None:
    deepest_first = sorted(new, key=lambda path: len(path.parts), reverse=True)
    for path in deepest_first:
        if _TMP_MARK in path.name or path.name.startswith(_INCOMPLETE_PREFIX):
            with contextlib.suppress(OSError):
                path.rmtree() if path.is_dir() else path.unlink()
    for path in deepest_first:
        with contextlib.suppress(OSError):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def _listing(roots) -> set:
    """Every path under ``roots`` (``epath.Path``s, local or gs://; its rglob refuses '**' patterns)."""
    paths, folders = set(), [root for root in roots if root.exists()]
    while folders:
        folder = folders.pop()
        paths.add(folder)
        for path in folder.iterdir():
            if path.is_dir():
                folders.append(path)
            else:
                paths.add(path)
    return paths


def prepare(builder, display_name: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Download and prepare ``builder``'s dataset, or refuse in one line (``UserError``) when it cannot be."""
    root = builder.data_dir_root
    if problem := manual_dir_problem(builder):
        raise UserError(problem)
    if why := unreachable_host(download_urls(builder), timeout):
        raise UserError(f"{display_name} is not prepared in {root} and cannot be downloaded from here ({why}); "
                           f"{how_to_prepare(builder, display_name)}")
    try:
        with removing_leftovers(builder):
            builder.download_and_prepare()
    except Exception as e:  # noqa: BLE001 - any download or preparation failure, as one line
        raise UserError(f"{display_name} is not prepared in {root} and downloading it failed "
                           f"({_root_cause(e)[:300]}); {how_to_prepare(builder, display_name)}") from None
