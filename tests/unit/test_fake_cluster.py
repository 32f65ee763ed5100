"""The fake cluster satisfies the ClusterAPI protocol the checks program against."""

from __future__ import annotations

from kaic.cluster.api import ClusterAPI
from tests.fakes import FakeCluster


def test_fake_cluster_satisfies_the_protocol() -> None:
    assert isinstance(FakeCluster(), ClusterAPI)
