"""kaic.lab.apiserver.Mirror: a paged list, then a watch that keeps the copy current."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

from kaic.lab.apiserver import ApiError, Mirror


def obj(name: str, rv: str, ns: str | None = "ns") -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "resourceVersion": rv}
    if ns:
        md["namespace"] = ns
    return {"metadata": md}


class FakeApi:
    """Pages for lists; scripted watch streams (each a list of events, or an exception)."""

    def __init__(self, pages: list[dict[str, Any]], watches: list[Any]) -> None:
        self.pages = pages
        self.watches = watches
        self.gets: list[str] = []
        self.watched: list[str] = []
        self.stop = threading.Event()

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self.gets.append(path)
        page = self.pages[min(len(self.gets) - 1, len(self.pages) - 1)]
        if isinstance(page, Exception):
            raise page
        return page

    def watch_lines(self, path: str, timeout: float) -> Iterator[bytes]:
        self.watched.append(path)
        if not self.watches:
            self.stop.set()
            return iter(())
        events = self.watches.pop(0)
        if isinstance(events, Exception):
            raise events
        return iter([json.dumps(e).encode() + b"\n" for e in events])


def run(api: FakeApi, path: str = "/api/v1/pods", **kw: Any) -> Mirror:
    seen: list[tuple[str, str]] = []
    m = Mirror(
        api,  # type: ignore[arg-type]
        path,
        on_event=lambda kind, o: seen.append((kind, o["metadata"]["name"])),
        **kw,
    )
    m.seen = seen  # type: ignore[attr-defined]
    m.run(api.stop)
    return m


def test_pages_are_followed_and_events_keep_the_copy() -> None:
    api = FakeApi(
        [
            {"items": [obj("a", "1")], "metadata": {"continue": "t/1"}},
            {"items": [obj("b", "2")], "metadata": {"resourceVersion": "5"}},
        ],
        [
            [
                {"type": "ADDED", "object": obj("c", "6")},
                {"type": "MODIFIED", "object": obj("a", "7")},
                {"type": "DELETED", "object": obj("b", "8")},
                {"type": "BOOKMARK", "object": obj("", "9")},
            ]
        ],
    )
    m = run(api)
    assert api.gets == ["/api/v1/pods?limit=500", "/api/v1/pods?limit=500&continue=t/1"]
    assert sorted(o["metadata"]["name"] for o in m.items()) == ["a", "c"]
    assert m.lists == 1 and m.synced.is_set()
    assert m.seen == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b")]  # type: ignore[attr-defined]
    assert "resourceVersion=5" in api.watched[0] and "allowWatchBookmarks=true" in api.watched[0]
    # the stream ended: it resumes from the bookmark's version, without a list
    assert "resourceVersion=9" in api.watched[1]


def test_an_error_event_lists_again() -> None:
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410}}
    api = FakeApi(
        [
            {"items": [obj("a", "1", ns=None)], "metadata": {"resourceVersion": "1"}},
            {"items": [obj("z", "3", ns=None)], "metadata": {"resourceVersion": "3"}},
        ],
        [[gone], []],
    )
    m = run(api, "/api/v1/nodes?labelSelector=x")
    assert m.lists == 2
    assert [o["metadata"]["name"] for o in m.items()] == ["z"]
    assert api.gets[0] == "/api/v1/nodes?labelSelector=x&limit=500"
    assert "resourceVersion=3" in api.watched[1]


def test_an_optional_collection_that_is_not_served_is_empty_and_synced() -> None:
    api = FakeApi([ApiError(404, "the server could not find the requested resource")], [])
    logs: list[str] = []
    m = Mirror(api, "/apis/kwok.x-k8s.io/v1alpha1/execs", optional=True, log=logs.append)  # type: ignore[arg-type]
    t = threading.Thread(target=m.run, args=(api.stop,), daemon=True)
    t.start()
    assert m.synced.wait(5)
    api.stop.set()
    t.join(5)
    assert m.items() == [] and logs == []
