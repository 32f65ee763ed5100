"""The base of lab components that run a real Go controller built from its module.

Owns: ``GoController``: a program of ``programs.toml`` run as one local process with the
lab's admin kubeconfig, its CRDs (a manifest list of the program) applied and
established before it starts, its admission webhooks served on 127.0.0.1 with a serving
certificate of the lab CA and registered by the lab with ``clientConfig.url``, its
health, metrics and webhook ports on loopback, and readiness = ``/readyz`` answers and,
when it elects a leader, its Lease is held. Also ``loopback_webhooks``, which points a
module's webhook configurations at that listener. Must not know any particular
controller (those are in ``components/``).

A new controller is a row in ``programs.toml`` (module, version, package, manifests)
plus a small subclass here in ``components/``: its ``program``, the manifest lists it
uses, ``args`` or ``env`` for its flags, and ``configure`` for objects it needs once it
runs. docs/lab.md, "Adding a component", shows one.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

from kaic.lab import programs
from kaic.lab.apiserver import probe
from kaic.lab.binaries import manifest_files, manifests
from kaic.lab.component import ProcessComponent
from kaic.lab.context import LabContext
from kaic.lab.crds import apply_all, wait_established
from kaic.lab.pki import issue_serving_cert

Webhook = dict[str, Any]


def loopback_webhooks(
    files: Iterable[Path],
    port: int,
    ca_pem: bytes,
    *,
    groups: frozenset[str] = frozenset(),
    prefix: str = "",
    labels: Mapping[str, str] | None = None,
    adjust: Callable[[Webhook, set[str]], Webhook] | None = None,
) -> list[dict[str, Any]]:
    """The webhook configurations of ``files`` (a module's manifests), each webhook's
    ``clientConfig`` replaced by ``https://127.0.0.1:port<path>`` with the lab CA.

    ``groups``: keep only webhooks whose rules name API groups all in it (empty: keep
    every webhook); ``prefix`` is put before each configuration's name (as the module's
    kustomization would); ``adjust(webhook, groups)`` may change a kept webhook.
    """
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    ca = base64.b64encode(ca_pem).decode()
    out = []
    for doc in docs:
        hooks = []
        for wh in doc.get("webhooks") or []:
            named = {g for r in wh.get("rules") or [] for g in r.get("apiGroups") or []}
            if groups and (not named or not named <= groups):
                continue
            path = wh["clientConfig"]["service"]["path"]
            wh = {**wh, "clientConfig": {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca}}
            hooks.append(adjust(wh, named) if adjust else wh)
        out.append(
            {
                "apiVersion": doc["apiVersion"],
                "kind": doc["kind"],
                "metadata": {
                    "name": f"{prefix}{doc['metadata']['name']}",
                    "labels": dict(labels or {}),
                },
                "webhooks": hooks,
            }
        )
    return out


def controller_labels(program: str) -> dict[str, str]:
    """Labels of the objects the lab makes for a controller (namespace, webhooks, …)."""
    return {
        "app.kubernetes.io/name": program,
        "app.kubernetes.io/version": programs.version(program),
        "app.kubernetes.io/managed-by": "kaic-lab",
    }


class GoController(ProcessComponent):
    """A Go controller built from a module: program ``program`` of ``programs.toml``."""

    program: ClassVar[str] = ""
    """The program whose (first) binary this runs."""
    crds: ClassVar[str] = ""
    """Manifest list of the program applied and established before start ("" = none)."""
    webhooks: ClassVar[str] = ""
    """Manifest list with its webhook configurations ("" = it serves no webhooks)."""
    webhook_groups: ClassVar[frozenset[str]] = frozenset()
    """Only webhooks for these API groups are registered (empty: all of the list)."""
    namespace: ClassVar[str] = ""
    """Its system namespace, created before start ("" = none)."""
    lease: ClassVar[str] = ""
    """Its leader-election Lease in ``namespace`` ("" = it runs without election)."""
    ready_timeout = 90.0

    # ---- what a subclass fills in ---------------------------------------------------
    def args(self, ctx: LabContext) -> list[str]:
        """Command-line arguments after the binary."""
        return []

    def prepare(self, ctx: LabContext) -> None:
        """Files or objects it needs before it starts (idempotent)."""

    def configure(self, ctx: LabContext) -> None:
        """Objects that need it running (after its webhooks are registered; idempotent)."""

    def adjust_webhook(self, webhook: Webhook, groups: set[str]) -> Webhook:
        """Change one registered webhook (``groups``: the API groups its rules name)."""
        return webhook

    # ---- ports, files, labels -------------------------------------------------------
    def port_of(self, ctx: LabContext, what: str) -> int:
        """Its loopback port ``what`` (``health``, ``metrics``, ``webhook``)."""
        return ctx.port(f"{self.program}-{what}")

    def port_keys(self) -> tuple[str, ...]:
        keys = ("health", "metrics", "webhook") if self.webhooks else ("health", "metrics")
        return tuple(f"{self.program}-{k}" for k in keys)

    def binary(self, ctx: LabContext) -> Path:
        return programs.binary_of(self.program, ctx.options.version)

    def data_dir(self, ctx: LabContext) -> Path:
        return ctx.dir(self.program)

    def cert_dir(self, ctx: LabContext) -> Path:
        """``tls.crt`` and ``tls.key``: its webhook serving certificate (lab CA)."""
        return self.data_dir(ctx) / "certs"

    def labels(self) -> dict[str, str]:
        return controller_labels(self.program)

    # ---- the ProcessComponent steps -------------------------------------------------
    def before_start(self, ctx: LabContext) -> None:
        programs.require_binary(self.program, ctx.options.version)
        if self.namespace:
            ctx.apply(
                [
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": self.namespace, "labels": self.labels()},
                    }
                ]
            )
        if self.crds:
            docs = manifests(self.program, self.crds, ctx.options.version)
            apply_all(ctx, docs)
            wait_established(ctx, docs)
        if self.webhooks and not (self.cert_dir(ctx) / "tls.crt").exists():
            issue_serving_cert(
                ctx.pki, self.cert_dir(ctx), "tls", dns=("localhost",), ips=("127.0.0.1",)
            )
        self.prepare(ctx)

    def argv(self, ctx: LabContext) -> list[str]:
        return [str(self.binary(ctx)), *self.args(ctx)]

    def ready(self, ctx: LabContext) -> bool:
        """``/readyz`` answers and, with a Lease, it is the leader: ``/readyz`` answers
        before the election is won, and its reconcilers and webhooks run only then."""
        return probe(f"http://127.0.0.1:{self.port_of(ctx, 'health')}/readyz") and (
            not self.lease or self.leader(ctx)
        )

    def leader(self, ctx: LabContext) -> bool:
        """True if its Lease has a holder."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.lease}"
        if not ctx.exists(path):
            return False
        return bool((ctx.get(path).get("spec") or {}).get("holderIdentity"))

    def after_start(self, ctx: LabContext) -> None:
        if self.webhooks:
            ctx.apply(self.webhook_configurations(ctx))
        self.configure(ctx)

    def webhook_configurations(self, ctx: LabContext) -> list[dict[str, Any]]:
        files = manifest_files(self.program, self.webhooks, ctx.options.version)
        return loopback_webhooks(
            files,
            self.port_of(ctx, "webhook"),
            ctx.pki.ca_crt.read_bytes(),
            groups=self.webhook_groups,
            prefix=f"{self.program}-",
            labels=self.labels(),
            adjust=self.adjust_webhook,
        )
