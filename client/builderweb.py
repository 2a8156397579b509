"""The builder-web lookups of ``update`` (albatross_client.ml ``can_update``), blocking I/O.

``/hash?sha256=H`` and ``/job/J/build/latest`` answer with a redirect to
``/job/J/build/UUID``; ``/job/J/build/UUID/main-binary`` is the image.  Every
request has a timeout and every body a size bound.  Run from a worker thread.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from client.errors import HttpFailed

__all__ = ["HTTP_TIMEOUT", "MAX_BINARY", "Build", "check_host", "fetch_binary", "find_updates"]

#: Seconds per HTTP request.
HTTP_TIMEOUT = 30.0
#: Largest unikernel binary we download.
MAX_BINARY = 256 * 1024 * 1024


def check_host(text: str) -> str:
    """``http[s]://hostname`` with an optional trailing slash (albatross ``uri_c``)."""
    parts = text.split("/")
    if parts[0] in ("http:", "https:") and len(parts) in (3, 4) and parts[1] == "" and parts[2]:
        if len(parts) == 4 and parts[3] != "":
            raise ValueError("expected http[s]://hostname")
        return text.rstrip("/")
    raise ValueError("expected http[s]://hostname")


@dataclass(frozen=True)
class Build:
    job: str
    old: str
    new: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _job_and_build(location: str) -> tuple[str, str]:
    path = urllib.parse.urlsplit(location).path
    parts = path.split("/")
    shape_ok = len(parts) in (5, 6) and parts[:2] == ["", "job"] and parts[3] == "build"
    if shape_ok and (len(parts) == 5 or parts[5] == ""):
        return parts[2], parts[4]
    raise HttpFailed(f"expected '/job/<jobname>/build/<uuid>', got: {location}")


def _redirect(url: str) -> str:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=HTTP_TIMEOUT) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            location = exc.headers.get("location")
            if location is None:
                raise HttpFailed("no Location header received in HTTP reply") from None
            return str(location)
        if exc.code == 404:
            raise HttpFailed("couldn't find the unikernel in the repository") from None
        raise HttpFailed(f"unexpected HTTP reply (status {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise HttpFailed(f"{url}: {getattr(exc, 'reason', exc)}") from None
    raise HttpFailed(f"unexpected HTTP reply (status {status})")


def find_updates(host: str, digest_hex: str) -> Build:
    job, old = _job_and_build(_redirect(f"{host}/hash?sha256={digest_hex}"))
    _, new = _job_and_build(_redirect(f"{host}/job/{job}/build/latest"))
    return Build(job, old, new)


def fetch_binary(host: str, build: Build) -> bytes:
    url = f"{host}/job/{build.job}/build/{build.new}/main-binary"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:
            body = resp.read(MAX_BINARY + 1)
    except urllib.error.HTTPError as exc:
        raise HttpFailed(f"unexpected HTTP reply (status {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise HttpFailed(f"{url}: {getattr(exc, 'reason', exc)}") from None
    if not body:
        raise HttpFailed("unexpected HTTP reply (empty body)")
    if len(body) > MAX_BINARY:
        raise HttpFailed(f"the binary is larger than {MAX_BINARY} octets")
    return bytes(body)
