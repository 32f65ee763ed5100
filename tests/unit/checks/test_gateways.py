"""The shared Gateway helpers: counting where requests landed, reading status."""

from __future__ import annotations

from kaic.checks.gateways import (
    conditions_line,
    gateway_programmed,
    gateway_url,
    http_gateway,
    parent_status,
    tally,
)


def test_tally_counts_backends_and_keeps_what_failed() -> None:
    out = "kaic-model-stable 200\nkaic-model-canary 200\nno available server 503\n 000\n"
    t = tally(out, 5, ("kaic-model-stable", "kaic-model-canary"))
    assert t.by_backend == {"kaic-model-stable": 1, "kaic-model-canary": 1}
    assert t.failures == [
        "no available server 503",
        "000",
        "no answer printed for this request",
    ]
    assert t.to_json()["failed"] == 3


def test_tally_ignores_lines_past_the_requests_sent_and_unknown_answerers() -> None:
    t = tally("a 200\nstranger 200\na 200\na 200\n", 3, ("a",))
    assert t.by_backend == {"a": 2}
    assert t.failures == ["stranger 200"]


def test_gateway_url_and_programmed_need_an_address() -> None:
    gw = http_gateway("g", "ns", "cls", 8000)
    assert gw["spec"]["listeners"][0]["port"] == 8000
    assert gateway_url(gw, 80) is None and not gateway_programmed(gw)
    gw["status"] = {
        "addresses": [{"value": "fd00::1"}],
        "conditions": [
            {"type": "Accepted", "status": "True"},
            {"type": "Programmed", "status": "True"},
        ],
    }
    assert gateway_url(gw, 80) == "http://[fd00::1]:80"
    assert gateway_programmed(gw)


def test_parent_status_and_conditions_line() -> None:
    route = {
        "status": {
            "parents": [
                {"parentRef": {"name": "other"}, "conditions": []},
                {
                    "parentRef": {"name": "g", "kind": "Gateway"},
                    "conditions": [
                        {"type": "Accepted", "status": "True", "reason": "Accepted"},
                        {
                            "type": "ResolvedRefs",
                            "status": "False",
                            "reason": "InvalidKind",
                            "message": "no such kind",
                        },
                    ],
                },
            ]
        }
    }
    parent = parent_status(route, "Gateway", "g")
    assert conditions_line(parent, ("Accepted", "ResolvedRefs", "Programmed")) == (
        "Accepted=True (Accepted), ResolvedRefs=False (InvalidKind: no such kind), "
        "Programmed missing"
    )
    assert parent_status(route, "Gateway", "missing") is None
