"""Reachability of evidence and metadata URLs.

Owns: checking many URLs concurrently (HEAD, then GET when HEAD fails or answers >= 400;
a status below 400 is reachable, as in the official validator), each with a timeout and
a User-Agent that names kaic. Must not decide findings' wording.
"""

from __future__ import annotations

import functools
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException

from kaic import __version__

USER_AGENT = (
    f"kaic/{__version__} (Kubernetes AI Conformance checklist validator;"
    " +https://github.com/cncf/k8s-ai-conformance)"
)
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_WORKERS = 16


@dataclass(frozen=True)
class UrlResult:
    url: str
    ok: bool
    detail: str = ""
    """Why it is not reachable: ``status code 404`` or the connection error."""


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """One opener (follows redirects, honours ``*_proxy``) with one TLS context.

    NOTE: a TLS context per request loads the system's CA certificates each time, tens of
    milliseconds of CPU per URL; one shared context is safe across threads."""
    context = ssl.create_default_context()
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))


def _request(url: str, method: str, timeout: float) -> int:
    req = urllib.request.Request(
        url,
        method=method,
        headers={
            "User-Agent": USER_AGENT,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Language": "en-US,en;q=0.5",
        },
    )
    try:
        with _opener().open(req, timeout=timeout) as resp:
            if method == "GET":
                resp.read(1024)
            return int(resp.status)
    except urllib.error.HTTPError as e:
        e.close()
        return int(e.code)


def check_url(url: str, timeout: float = DEFAULT_TIMEOUT_S) -> UrlResult:
    """HEAD, then GET if needed; reachable when a status below 400 comes back."""
    if not url.startswith(("http://", "https://")):
        return UrlResult(url, False, "not an http(s) URL")
    try:
        if _request(url, "HEAD", timeout) < 400:
            return UrlResult(url, True)
    except (urllib.error.URLError, HTTPException, OSError, ValueError):
        pass
    try:
        status = _request(url, "GET", timeout)
    except urllib.error.URLError as e:
        return UrlResult(url, False, str(e.reason))
    except TimeoutError:
        return UrlResult(url, False, f"timed out after {timeout:g}s")
    except (HTTPException, OSError, ValueError) as e:
        return UrlResult(url, False, str(e) or type(e).__name__)
    if status >= 400:
        return UrlResult(url, False, f"status code {status}")
    return UrlResult(url, True)


class UrlChecker:
    """Checks URLs concurrently, each URL once per checker."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S, workers: int = DEFAULT_WORKERS):
        self.timeout = timeout
        self.workers = workers
        self._cache: dict[str, UrlResult] = {}

    def check_all(self, urls: Iterable[str]) -> dict[str, UrlResult]:
        todo = sorted({u for u in urls if u not in self._cache})
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(todo))) as pool:
                for res in pool.map(lambda u: check_url(u, self.timeout), todo):
                    self._cache[res.url] = res
        return dict(self._cache)
