"""The objects a check created in its namespace: kept as evidence, deleted at the end.

Owns: ``Created`` (what a check made, in the order it made them; their current state as
one YAML evidence file, without ``managedFields``; deletion, each failure logged and
never raised), ``trimmed``, and ``keep_with_events`` (given objects and the namespace's
Events as evidence). Must not know any requirement.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import yaml

from kaic.checks.base import CheckContext
from kaic.cluster.api import KubeObject
from kaic.errors import ClusterError


def trimmed(obj: KubeObject) -> KubeObject:
    """A copy of ``obj`` without its noisy metadata (managedFields), for evidence files."""
    out: KubeObject = json.loads(json.dumps(obj))
    out.get("metadata", {}).pop("managedFields", None)
    return out


def keep_with_events(ctx: CheckContext, objs: Sequence[KubeObject]) -> None:
    """``objs`` as ``objects.yaml`` and the Events of the check's namespace, one line
    each, as ``events.txt``; ``ClusterError`` when the Events cannot be read."""
    ctx.evidence("objects.yaml", yaml.safe_dump_all(objs, sort_keys=False), "application/yaml")
    events = ctx.cluster.events(ctx.namespace)
    ctx.evidence(
        "events.txt",
        "".join(
            f"{e.get('type')} {e.get('reason')} "
            f"{e.get('involvedObject', {}).get('kind')}/"
            f"{e.get('involvedObject', {}).get('name')}: {e.get('message')}\n"
            for e in events
        )
        or "(no events)\n",
    )


class Created:
    """Objects of the check's namespace (or ``namespace``) that the check created (``add``
    after each create)."""

    def __init__(self, ctx: CheckContext, namespace: str | None = None) -> None:
        self.ctx = ctx
        self.namespace = namespace or ctx.namespace
        self.refs: list[tuple[str, str, str]] = []
        """(apiVersion, kind, name), in creation order."""

    def add(self, api_version: str, kind: str, name: str) -> None:
        if (api_version, kind, name) not in self.refs:
            self.refs.append((api_version, kind, name))

    def names(self, kind: str) -> list[str]:
        return [n for _, k, n in self.refs if k == kind]

    def _select(self, kinds: Sequence[str] | None) -> list[tuple[str, str, str]]:
        """All refs in creation order, or those of ``kinds``, kind by kind in that order."""
        if kinds is None:
            return list(self.refs)
        return [r for want in kinds for r in self.refs if r[1] == want]

    def current(self, kinds: Sequence[str] | None = None) -> list[KubeObject]:
        """The objects as the cluster has them now (those already gone are left out)."""
        out = []
        for av, kind, name in self._select(kinds):
            try:
                obj = self.ctx.cluster.get(av, kind, name, self.namespace)
            except ClusterError:
                obj = None
            if obj is not None:
                out.append(trimmed(obj))
        return out

    def record(self, filename: str, kinds: Sequence[str] | None = None) -> None:
        """Their current state as the evidence file ``filename`` (none when all are gone)."""
        objs = self.current(kinds)
        if objs:
            self.ctx.evidence(
                filename, yaml.safe_dump_all(objs, sort_keys=False), "application/yaml"
            )

    def delete_all(self, kinds: Sequence[str] | None = None) -> None:
        """Delete them, kind by kind in the order of ``kinds`` (all, in creation order,
        without it); a failure is logged, never raised."""
        for av, kind, name in self._select(kinds):
            try:
                self.ctx.cluster.delete(av, kind, name, self.namespace)
            except ClusterError as e:
                self.ctx.log(f"could not delete {kind.lower()} {name}: {e}")
