"""kwok's stages as the lab applies them: a large lab's node status heartbeats further
apart (its Leases keep the nodes alive)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from kaic.lab.components import kwok
from kaic.lab.options import LabOptions

HEARTBEAT = {
    "metadata": {"name": "node-heartbeat-with-lease"},
    "spec": {
        "delay": {"durationMilliseconds": 600000, "jitterDurationMilliseconds": 610000},
        "next": {"statusTemplate": "conditions: []\n"},
    },
}


@pytest.mark.parametrize(("nodes", "scale"), [(2, 1), (999, 1), (1998, 1), (1999, 2), (4999, 5)])
def test_the_node_status_heartbeat_grows_with_the_lab_from_1000_nodes(
    monkeypatch: pytest.MonkeyPatch, nodes: int, scale: int
) -> None:
    monkeypatch.setattr(kwok, "manifests", lambda *a: [copy.deepcopy(HEARTBEAT)])
    options = LabOptions(name="unit", nodes=nodes, cpu_nodes=1)
    ctx: Any = SimpleNamespace(options=options, enabled=set())
    (stage,) = kwok.kwok_stages(ctx)
    assert options.node_status_scale == scale
    assert stage["spec"]["delay"] == {
        "durationMilliseconds": 600000 * scale,
        "jitterDurationMilliseconds": 610000 * scale,
    }
