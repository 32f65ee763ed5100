"""ext_network_policy (extended profile, TestExtNetworkPolicy): a NetworkPolicy provider
enforces user-defined NetworkPolicies on the pod network.

Owns: the test pods (a server answering ``GET /hostname`` and two clients, one the allow
rule names and one it does not), the two NetworkPolicies (default-deny ingress in the
check's namespace, and one rule allowing the first client to the server's port), the
procedure (real connections from the clients, exec'd, before and after the policies,
with bounded retries), the detection of cluster-scoped policy APIs for large clusters,
and the evidence. Must not dial anything itself: every connection is made from a pod.
"""

from __future__ import annotations

import json
import shlex
import time
from typing import Any

import yaml

from kaic.checks.base import CheckContext, CheckOption, Permission, Resource, Subtest, check, shared
from kaic.checks.execs import shown_command, transcript_entry
from kaic.checks.pods import RESTRICTED, SECCOMP
from kaic.checks.waits import pod_running_or_fail
from kaic.cluster.api import KubeObject
from kaic.errors import ClusterError, PermissionDeniedError

NETWORKING = "networking.k8s.io/v1"
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
"""agnhost: ``netexec`` answers ``GET /hostname`` with the pod's name; the image has
``sh`` and ``curl`` for the clients."""
PORT = 8080
SERVER, ALLOWED, DENIED = "kaic-np-server", "kaic-np-allowed", "kaic-np-denied"
ROLE = "kaic.io/network-policy-role"
DENY_ALL, ALLOW = "kaic-default-deny-ingress", "kaic-allow-client"
BLOCKED_IN_A_ROW = 2
"""Consecutive failed attempts of the denied client that count as blocked."""

OPTIONS = (
    CheckOption(
        "network-policy-image",
        "image of the server (args `netexec --http-port=8080`, answering GET /hostname with"
        " the pod's name, as agnhost does) and of the clients (args `pause`; needs sh, curl)",
        IMAGE,
    ),
    CheckOption(
        "network-policy-timeout",
        "seconds for a connection to succeed, or for a policy to take effect",
        "60",
    ),
    CheckOption("network-policy-connect-timeout", "seconds one connection attempt may take", "3"),
)

# Cluster-scoped policy APIs, the document's "guidance or alternatives" for large clusters.
SCALE_APIS: tuple[tuple[str, str, str], ...] = (
    ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy", "AdminNetworkPolicy"),
    (
        "policy.networking.k8s.io/v1alpha1",
        "BaselineAdminNetworkPolicy",
        "BaselineAdminNetworkPolicy",
    ),
    ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", "ClusterNetworkPolicy"),
    ("cilium.io/v2", "CiliumClusterwideNetworkPolicy", "Cilium cluster-wide policies"),
    ("crd.projectcalico.org/v1", "GlobalNetworkPolicy", "Calico global policies"),
    ("crd.antrea.io/v1beta1", "ClusterNetworkPolicy", "Antrea cluster network policies"),
)


def pod(name: str, namespace: str, image: str, role: str, args: list[str]) -> KubeObject:
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "args": args,
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": dict(RESTRICTED),
    }
    if args[:1] == ["netexec"]:
        container["ports"] = [{"name": "http", "containerPort": PORT}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {ROLE: role}},
        "spec": {
            "containers": [container],
            "securityContext": dict(SECCOMP),
            "terminationGracePeriodSeconds": 1,
        },
    }


def policies(namespace: str) -> list[KubeObject]:
    """Default-deny ingress for every pod of ``namespace``, and one rule that lets the
    allowed client reach the server's port."""
    return [
        {
            "apiVersion": NETWORKING,
            "kind": "NetworkPolicy",
            "metadata": {"name": DENY_ALL, "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
        {
            "apiVersion": NETWORKING,
            "kind": "NetworkPolicy",
            "metadata": {"name": ALLOW, "namespace": namespace},
            "spec": {
                "podSelector": {"matchLabels": {ROLE: "server"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {ROLE: "allowed"}}}],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    }
                ],
            },
        },
    ]


def connect_command(ip: str, connect_timeout: float) -> list[str]:
    """One HTTP GET of the server's ``/hostname``; prints the body."""
    host = f"[{ip}]" if ":" in ip else ip
    url = f"http://{host}:{PORT}/hostname"
    return ["sh", "-c", f"curl -sS -m {connect_timeout:g} {shlex.quote(url)}"]


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.ns = ctx.namespace
        self.image = ctx.option("network-policy-image") or IMAGE
        self.timeout = ctx.float_option("network-policy-timeout")
        self.connect_timeout = max(1.0, ctx.float_option("network-policy-connect-timeout"))
        self.server_ip = ""
        self.transcript: list[str] = []
        self.evidence: dict[str, Any] = {"namespace": self.ns}

    # -- one connection ------------------------------------------------------------------
    def connect(self, client: str) -> bool | None:
        """Whether ``client`` reached the server (its answer is the server's name); None
        when the attempt could not be made (exec failed)."""
        command = connect_command(self.server_ip, self.connect_timeout)
        started = time.monotonic()
        try:
            r = self.c.exec(
                self.ns, client, command, timeout=self.ctx.budget(self.connect_timeout + 30)
            )
        except PermissionDeniedError:
            raise
        except ClusterError as e:
            self.transcript.append(
                f"$ {shown_command(self.ns, client, command, None)}\n(exec failed: {e})\n"
            )
            return None
        took = time.monotonic() - started
        self.transcript.append(transcript_entry(shown_command(self.ns, client, command, None), r))
        self.transcript.append(f"[{client} -> {SERVER}: {took:.1f}s]\n")
        return r.exit_code == 0 and r.stdout.strip() == SERVER

    def until(self, client: str, want: bool, in_a_row: int = 1) -> tuple[bool, int, str]:
        """Attempt from ``client`` until ``in_a_row`` consecutive attempts give ``want``,
        at most ``network-policy-timeout`` seconds: (reached, attempts, last result)."""
        deadline = time.monotonic() + self.ctx.budget(self.timeout)
        attempts, streak, last = 0, 0, "no attempt"
        while True:
            attempts += 1
            got = self.connect(client)
            last = {True: "connected", False: "no connection", None: "exec failed"}[got]
            streak = streak + 1 if got is want else 0
            if streak >= in_a_row:
                return True, attempts, last
            if time.monotonic() >= deadline:
                return False, attempts, last
            self.ctx.sleep(1.0)

    # -- steps ---------------------------------------------------------------------------
    def pods_run(self, t: Subtest) -> None:
        for name, role, args in (
            (SERVER, "server", ["netexec", f"--http-port={PORT}"]),
            (ALLOWED, "allowed", ["pause"]),
            (DENIED, "denied", ["pause"]),
        ):
            self.c.create(pod(name, self.ns, self.image, role, args))
        for name in (SERVER, ALLOWED, DENIED):
            obj = pod_running_or_fail(self.ctx, t, name, self.timeout)
            if name == SERVER:
                self.server_ip = str((obj.get("status") or {}).get("podIP") or "")
        if not self.server_ip:
            obj = self.c.get("v1", "Pod", SERVER, self.ns) or {}
            self.server_ip = str((obj.get("status") or {}).get("podIP") or "")
        if not self.server_ip:
            t.fail(f"pod {SERVER} runs but has no pod IP: the pod network gave it no address")
        self.evidence["server_ip"] = self.server_ip
        t.log(f"{SERVER} serves at {self.server_ip}:{PORT}; clients {ALLOWED}, {DENIED} run")

    def baseline(self, t: Subtest) -> None:
        for client in (ALLOWED, DENIED):
            ok, attempts, last = self.until(client, True)
            self.evidence.setdefault("baseline", {})[client] = {"attempts": attempts, "last": last}
            if not ok:
                t.error(
                    f"before any NetworkPolicy, {client} could not reach {SERVER} at"
                    f" {self.server_ip}:{PORT} in {attempts} attempts ({last}): pods cannot"
                    " connect at all, so kaic cannot tell enforcement from a broken pod network"
                )
        t.log(f"without a policy both clients reach {SERVER}")

    def apply_policies(self, t: Subtest) -> None:
        if not any(r.kind == "NetworkPolicy" for r in self.c.api_resources(NETWORKING)):
            t.fail(f"the apiserver does not serve NetworkPolicy in {NETWORKING}")
        objs = policies(self.ns)
        for obj in objs:
            try:
                self.c.create(obj)
            except PermissionDeniedError:
                raise
            except ClusterError as e:
                t.fail(f"NetworkPolicy {obj['metadata']['name']} was not accepted: {e}")
        self.evidence["policies"] = objs
        t.log(f"created NetworkPolicies {DENY_ALL} (all ingress) and {ALLOW} ({ALLOWED} only)")

    def denied_blocked(self, t: Subtest) -> None:
        start = time.monotonic()
        ok, attempts, last = self.until(DENIED, False, BLOCKED_IN_A_ROW)
        took = time.monotonic() - start
        self.evidence["denied"] = {"blocked": ok, "attempts": attempts, "last": last}
        if not ok:
            if last == "exec failed":
                t.error(f"the connection from {DENIED} could not be attempted (exec failed)")
            t.fail(
                f"the denied connection {DENIED} -> {SERVER} still succeeds {took:.0f}s after"
                f" a default-deny ingress policy ({attempts} attempts): no NetworkPolicy"
                " enforcer acts on the pod network"
            )
        t.log(f"{DENIED} -> {SERVER} blocked after {took:.1f}s ({attempts} attempts)")

    def allowed_succeeds(self, t: Subtest) -> None:
        ok, attempts, last = self.until(ALLOWED, True)
        self.evidence["allowed"] = {"connected": ok, "attempts": attempts, "last": last}
        if not ok:
            t.fail(
                f"the allowed connection {ALLOWED} -> {SERVER}:{PORT} fails under the policy"
                f" that allows it ({attempts} attempts, {last}): the enforcer blocks what the"
                " allow rule admits"
            )
        t.log(f"{ALLOWED} -> {SERVER} still connects under the allow rule")

    def scale_guidance(self, t: Subtest) -> None:
        found = [
            f"{what} ({api})"
            for api, kind, what in SCALE_APIS
            if any(r.kind == kind for r in self.c.api_resources(api))
        ]
        self.evidence["cluster_scoped_policy_apis"] = found
        if not found:
            t.skip(
                "no cluster-scoped policy API (AdminNetworkPolicy, BaselineAdminNetworkPolicy,"
                " ClusterNetworkPolicy of policy.networking.k8s.io, or a provider's own) is"
                " served: attach the platform's guidance for NetworkPolicy at large scale"
            )
        t.log("cluster-scoped policy APIs: " + "; ".join(found))

    def keep_evidence(self) -> None:
        self.ctx.evidence(
            "network-policy.json",
            json.dumps(self.evidence, indent=2, default=str),
            "application/json",
        )
        self.ctx.evidence("connections.log", "".join(self.transcript) or "(no attempt)\n")
        try:
            objs = self.c.list("v1", "Pod", self.ns) + self.c.list(
                NETWORKING, "NetworkPolicy", self.ns
            )
            self.ctx.evidence(
                "objects.yaml", yaml.safe_dump_all(objs, sort_keys=False), "application/yaml"
            )
        except ClusterError as e:
            self.ctx.log(f"could not keep the pods and policies as evidence: {e}")


@check(
    "ext_network_policy",
    test="TestExtNetworkPolicy",
    locks=shared(Resource.NODE_CAPACITY),
    options=OPTIONS,
    permissions=(
        Permission("create", "pods"),
        Permission("get", "pods"),
        Permission("list", "pods"),
        Permission("create", "pods", subresource="exec"),
        Permission("create", "networkpolicies", "networking.k8s.io"),
        Permission("list", "networkpolicies", "networking.k8s.io"),
    ),
    timeout_s=420.0,
)
def ext_network_policy(ctx: CheckContext) -> None:
    """Under a default-deny ingress policy with one allow rule, the allowed client's real
    connection to the server succeeds and the other client's is blocked."""
    run = _Run(ctx)
    try:
        ctx.step("PodsRun", run.pods_run)
        ctx.step("ConnectivityWithoutPolicy", run.baseline, needs=("PodsRun",))
        ctx.step("PoliciesApplied", run.apply_policies, needs=("ConnectivityWithoutPolicy",))
        ctx.step("DeniedConnectionBlocked", run.denied_blocked, needs=("PoliciesApplied",))
        ctx.step("AllowedConnectionSucceeds", run.allowed_succeeds, needs=("PoliciesApplied",))
        ctx.step("ClusterScopedPolicyAPI", run.scale_guidance)
    finally:
        run.keep_evidence()
