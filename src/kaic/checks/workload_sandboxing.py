"""workload_sandboxing: a sandboxed workload is isolated from its node and from other pods.

Owns: finding the platform's sandbox (a RuntimeClass whose name or handler names a
sandbox runtime, or the agent-sandbox API ``agents.x-k8s.io``), running a sandboxed pod
and an unsandboxed control pod on the same node, the probe ``exec``'d in both, and the
five sub-tests of ``TestWorkloadSandboxing``. Must not import the Kubernetes client,
another requirement's module, or know anything about the lab.

Procedure (KAR-0020; upstream ``TestWorkloadSandboxing``, same sub-test names and probe
markers). The probe prints ``SANDBOX_INFO:``/``SANDBOX_PROBE:`` lines in both pods; the
control pod first writes a marker file. Then:

* ``SchedulingAndExecution`` — the sandboxed pod runs with the RuntimeClass and the probe
  completes (``SANDBOX_PROBE: COMPLETED``).
* ``ProcessIsolation`` — it sees no node daemons (kubelet, containerd, crio, dockerd,
  systemd-journald) and its PID namespace is not the control pod's.
* ``KernelAndMemoryIsolation`` — ``/dev/mem`` and ``/dev/kmem`` cannot be read, and its
  kernel identity (``uname -r``, ``/proc/version``, boot id) differs from the control
  pod's: a sandbox has its own kernel (gVisor's Sentry, a Kata guest).
* ``FilesystemIsolation`` — no node path (``/etc/kubernetes``, ``/var/lib/kubelet``,
  ``/var/log/pods``) is there and the marker file the control pod wrote is not visible.
* ``NetworkIsolation`` — no node bridge or CNI interface is visible and its network
  namespace is not the control pod's.

The comparisons with the control pod are kaic's addition: the requirement asks for
isolation "from the host node and other co-located pods", and without them a workload
running in its node's namespaces could pass every other probe.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from kaic.checks.base import CheckContext, CheckOption, Permission, Resource, Subtest, check, shared
from kaic.checks.created import Created, trimmed
from kaic.checks.predicates import pod_started
from kaic.cluster.api import ClusterAPI, KubeObject, name_of
from kaic.errors import ClusterError, UsageError

SANDBOX_KEYWORDS = ("gvisor", "runsc", "kata", "sandboxed", "quark", "krun")
AGENT_SANDBOX_GROUP = "agents.x-k8s.io"
TYPES = ("auto", "runtimeclass", "agent-sandbox")
TEST_LABEL = "ai-conformance.kubernetes.io/test"
CONTAINER = "prober"
COMPLETED = "SANDBOX_PROBE: COMPLETED"
PROBE_ATTEMPTS = 3
MARKER_DIR = "/tmp"

PROBE = r"""echo "SANDBOX_PROBE: SCHEDULING=PASS"
echo "SANDBOX_INFO: KERNEL_RELEASE=$(uname -r 2>/dev/null || echo unknown)"
echo "SANDBOX_INFO: KERNEL_VERSION=$(cat /proc/version 2>/dev/null || echo unknown)"
echo "SANDBOX_INFO: BOOT_ID=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)"
for ns in pid net mnt; do
  echo "SANDBOX_INFO: NS_$ns=$(readlink /proc/self/ns/$ns 2>/dev/null || echo unknown)"
done
daemons=""
count=0
for p in /proc/[0-9]*; do
  [ -d "$p" ] || continue
  count=$((count+1))
  c=$(cat "$p/comm" 2>/dev/null) || continue
  case "$c" in
    kubelet|containerd|containerd-shim*|dockerd|crio|conmon|systemd-journal) daemons="$daemons $c";;
  esac
done
echo "SANDBOX_INFO: PID_COUNT=$count"
echo "SANDBOX_INFO: NODE_DAEMONS=${daemons# }"
mem=none
for m in /dev/mem /dev/kmem; do
  if head -c 1 "$m" >/dev/null 2>&1; then mem="$mem $m"; fi
done
echo "SANDBOX_INFO: READABLE_MEMORY=${mem#none }"
paths=""
for p in /etc/kubernetes /var/lib/kubelet /var/log/pods; do
  if [ -e "$p" ]; then paths="$paths $p"; fi
done
echo "SANDBOX_INFO: NODE_PATHS=${paths# }"
if [ -n "${KAIC_MARKER:-}" ]; then
  seen=absent
  if [ -e "$KAIC_MARKER" ]; then seen=visible; fi
  echo "SANDBOX_INFO: MARKER=$seen"
fi
ifs=""
if [ -r /proc/net/dev ]; then
  ifs=$(sed -n '3,$s/^ *\([^:]*\):.*/\1/p' /proc/net/dev | tr '\n' ' ')
elif [ -d /sys/class/net ]; then
  ifs=$(ls /sys/class/net 2>/dev/null | tr '\n' ' ')
fi
echo "SANDBOX_INFO: INTERFACES=$ifs"
echo "SANDBOX_PROBE: COMPLETED"
"""

NODE_INTERFACES = re.compile(
    r"^(docker0|cbr0|cni0|flannel.*|br-.*|bond.*|dummy.*|cilium_.*|vxlan.*|weave|kube-bridge|tunl0)$"
)


@dataclass(frozen=True)
class Probe:
    """What the probe printed in one pod."""

    info: Mapping[str, str]
    completed: bool
    raw: str

    def get(self, key: str) -> str:
        v = self.info.get(key, "").strip()
        return "" if v == "unknown" else v

    @property
    def interfaces(self) -> list[str]:
        return self.get("INTERFACES").split()


def parse_probe(stdout: str) -> Probe:
    info: dict[str, str] = {}
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("SANDBOX_INFO: ") and "=" in line:
            k, _, v = line[len("SANDBOX_INFO: ") :].partition("=")
            info[k] = v
    return Probe(info, COMPLETED in stdout.splitlines() or COMPLETED in stdout, stdout)


@dataclass(frozen=True)
class Solution:
    kind: str
    """``runtimeclass`` or ``agent-sandbox``."""
    runtime_class: str = ""
    handler: str = ""
    api_version: str = ""

    def describe(self) -> str:
        if self.kind == "agent-sandbox":
            rc = (
                f", RuntimeClass {self.runtime_class} (handler {self.handler})"
                if self.runtime_class
                else ""
            )
            return f"agent-sandbox {self.api_version} Sandbox{rc}"
        return f"RuntimeClass {self.runtime_class} (handler {self.handler})"


def is_sandbox_runtime(rc: KubeObject) -> bool:
    text = f"{name_of(rc)} {rc.get('handler', '')}".lower()
    return any(k in text for k in SANDBOX_KEYWORDS)


class NoSandbox(Exception):
    pass


def find_solution(cluster: ClusterAPI, kind: str, wanted: str) -> Solution:
    """The sandbox to test, as ``--sandbox-type``/``--sandbox-runtime-class`` ask."""
    rc: KubeObject | None = None
    if wanted:
        rc = cluster.get("node.k8s.io/v1", "RuntimeClass", wanted)
        if rc is None:
            raise UsageError(f"--sandbox-runtime-class {wanted}: no such RuntimeClass")
    if kind in ("auto", "runtimeclass"):
        if rc is not None:
            return Solution("runtimeclass", name_of(rc), str(rc.get("handler", "")))
        found = [r for r in cluster.list("node.k8s.io/v1", "RuntimeClass") if is_sandbox_runtime(r)]
        if found:
            r = sorted(found, key=name_of)[0]
            return Solution("runtimeclass", name_of(r), str(r.get("handler", "")))
        if kind == "runtimeclass":
            raise NoSandbox(
                "no RuntimeClass whose name or handler names a sandbox runtime ("
                + ", ".join(SANDBOX_KEYWORDS)
                + ")"
            )
    versions = [v for v in cluster.api_versions() if v.startswith(AGENT_SANDBOX_GROUP + "/")]
    if versions:
        return Solution(
            "agent-sandbox",
            name_of(rc) if rc else "",
            str(rc.get("handler", "")) if rc else "",
            sorted(versions)[-1],
        )
    raise NoSandbox(
        "no RuntimeClass whose name or handler names a sandbox runtime ("
        + ", ".join(SANDBOX_KEYWORDS)
        + f") and no {AGENT_SANDBOX_GROUP} API"
    )


@check(
    "workload_sandboxing",
    test="TestWorkloadSandboxing",
    locks=shared(Resource.NODE_CAPACITY),
    options=(
        CheckOption(
            "sandbox-runtime-class",
            "RuntimeClass of the sandbox (default: the first whose name or handler names "
            "a sandbox runtime)",
            default="",
        ),
        CheckOption("sandbox-type", "auto, runtimeclass or agent-sandbox", default="auto"),
        CheckOption("sandbox-image", "image of the probe pods (needs sh)", default="busybox:1.36"),
        CheckOption(
            "sandbox-namespace",
            "existing namespace for the pods (default: the check's own)",
            default="",
        ),
        CheckOption("sandbox-timeout", "seconds for each pod to run and each probe", default="180"),
    ),
    permissions=(
        Permission("list", "runtimeclasses", "node.k8s.io", namespaced=False),
        Permission("create", "pods"),
        Permission("get", "pods"),
        Permission("list", "pods"),
        Permission("delete", "pods"),
        Permission("create", "pods", subresource="exec"),
    ),
    timeout_s=600.0,
)
def workload_sandboxing(ctx: CheckContext) -> None:
    """A workload in the platform's sandbox is isolated from its node's kernel, processes,
    filesystem and network, and from a co-located unsandboxed pod."""
    kind = (ctx.option("sandbox-type") or "auto").lower()
    if kind not in TYPES:
        raise UsageError(f"--sandbox-type must be one of {', '.join(TYPES)}, got {kind!r}")
    try:
        sol = find_solution(ctx.cluster, kind, ctx.option("sandbox-runtime-class") or "")
    except NoSandbox as e:
        ctx.fail(
            f"no sandboxing mechanism: {e}; name one with --sandbox-runtime-class or --sandbox-type"
        )
    ctx.log(f"sandbox: {sol.describe()}")
    run = _Run(ctx, sol)
    try:
        run.start()
        sandboxed, control = run.sandboxed_probe, run.control_probe
        with ctx.subtest("SchedulingAndExecution") as t:
            t.require(
                sandboxed.completed,
                f"the probe in sandboxed pod {run.sandboxed} did not complete: "
                f"{sandboxed.raw.strip()[-300:]}",
            )
            t.log(
                f"sandboxed pod {run.sandboxed} runs on node {run.node} with {sol.describe()}; "
                f"kernel {sandboxed.get('KERNEL_RELEASE') or '?'}"
            )
        with ctx.subtest("ProcessIsolation") as t:
            problems = []
            if sandboxed.get("NODE_DAEMONS"):
                problems.append(f"it sees node processes: {sandboxed.get('NODE_DAEMONS')}")
            problems += _same_ns(sandboxed, control, "pid", "PID")
            t.log(f"visible processes: {sandboxed.get('PID_COUNT') or '?'}")
            _judge(t, run, problems)
        with ctx.subtest("KernelAndMemoryIsolation") as t:
            problems = []
            if sandboxed.get("READABLE_MEMORY") not in ("", "none"):
                problems.append(f"it can read {sandboxed.get('READABLE_MEMORY')}")
            fields = [
                (f, sandboxed.get(k), control.get(k))
                for f, k in (
                    ("kernel release", "KERNEL_RELEASE"),
                    ("/proc/version", "KERNEL_VERSION"),
                    ("boot id", "BOOT_ID"),
                )
            ]
            known = [(f, a, b) for f, a, b in fields if a and b]
            differ = [f for f, a, b in known if a != b]
            if not known:
                problems.append("neither pod could read its kernel identity")
            elif not differ:
                problems.append(
                    f"it runs on the same kernel as unsandboxed pod {run.control} on node "
                    f"{run.node} ({', '.join(f'{f} {a}' for f, a, _ in known)}): handler "
                    f"{sol.handler or '(default)'} gives no kernel boundary"
                )
            else:
                t.log(f"kernel identity differs from the control pod in: {', '.join(differ)}")
            _judge(t, run, problems)
        with ctx.subtest("FilesystemIsolation") as t:
            problems = []
            if sandboxed.get("NODE_PATHS"):
                problems.append(f"node paths are visible: {sandboxed.get('NODE_PATHS')}")
            if sandboxed.get("MARKER") == "visible":
                problems.append(
                    f"it sees the file {run.marker} that unsandboxed pod {run.control} wrote"
                )
            elif sandboxed.get("MARKER") != "absent":
                problems.append("the probe did not report the marker file")
            # NOTE: no mount namespace comparison: a runtime may give each exec its own
            # short-lived mount namespace, whose number the next one can reuse; the
            # marker file is the evidence.
            _judge(t, run, problems)
        with ctx.subtest("NetworkIsolation") as t:
            problems = []
            node_ifs = [i for i in sandboxed.interfaces if NODE_INTERFACES.match(i)]
            if node_ifs:
                problems.append(f"node interfaces are visible: {', '.join(node_ifs)}")
            problems += _same_ns(sandboxed, control, "net", "network")
            t.log(f"interfaces: {' '.join(sandboxed.interfaces) or '(none)'}")
            _judge(t, run, problems)
    finally:
        run.record_evidence()
        run.delete_all()


def _same_ns(sandboxed: Probe, control: Probe, ns: str, what: str) -> list[str]:
    a, b = sandboxed.get(f"NS_{ns}"), control.get(f"NS_{ns}")
    if a and b and a == b:
        return [f"it shares its {what} namespace ({a}) with the unsandboxed pod"]
    return []


def _judge(t: Subtest, run: _Run, problems: list[str]) -> None:
    if problems:
        t.fail(f"sandboxed pod {run.sandboxed} on node {run.node}: " + "; ".join(problems))


class _Run:
    def __init__(self, ctx: CheckContext, sol: Solution) -> None:
        self.ctx = ctx
        self.cluster: ClusterAPI = ctx.cluster
        self.sol = sol
        self.ns = ctx.option("sandbox-namespace") or ctx.namespace
        self.image = ctx.option("sandbox-image") or "busybox:1.36"
        self.timeout = ctx.float_option("sandbox-timeout") or 180.0
        self.sandboxed = "sandboxed-probe-pod"
        self.control = "unsandboxed-control-pod"
        self.sandbox_cr = ""
        self.created = Created(ctx, self.ns)
        self.node = ""
        self.marker = f"{MARKER_DIR}/kaic-sandbox-marker-{secrets.token_hex(6)}"
        self.transcript: list[str] = []
        self.sandboxed_probe = Probe({}, False, "")
        self.control_probe = Probe({}, False, "")

    def container(self) -> dict[str, Any]:
        return {
            "name": CONTAINER,
            "image": self.image,
            "command": ["sh", "-c", "sleep 3600"],
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "200m", "memory": "128Mi"},
            },
        }

    def pod_spec(self, runtime_class: str, node: KubeObject | None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "activeDeadlineSeconds": int(self.ctx.timeout_s) + 120,
            "containers": [self.container()],
        }
        if runtime_class:
            spec["runtimeClassName"] = runtime_class
        if node is not None:
            spec["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchFields": [
                                    {
                                        "key": "metadata.name",
                                        "operator": "In",
                                        "values": [name_of(node)],
                                    }
                                ]
                            }
                        ]
                    }
                }
            }
            # NOTE: a dedicated sandbox pool is often tainted; the control pod must land there.
            spec["tolerations"] = [
                {"key": x.get("key"), "operator": "Exists", "effect": x.get("effect")}
                for x in (node.get("spec") or {}).get("taints") or []
                if x.get("effect") in ("NoSchedule", "NoExecute")
            ]
        return spec

    def start(self) -> None:
        labels = {TEST_LABEL: "workload-sandboxing"}
        meta: dict[str, Any] = {"namespace": self.ns, "labels": labels}
        if self.sol.kind == "agent-sandbox":
            self.sandbox_cr = "sandboxed-probe-cr"
            self.cluster.create(
                {
                    "apiVersion": self.sol.api_version,
                    "kind": "Sandbox",
                    "metadata": {"name": self.sandbox_cr} | meta,
                    "spec": {
                        "podTemplate": {
                            "metadata": {"labels": dict(labels)},
                            "spec": self.pod_spec(self.sol.runtime_class, None),
                        }
                    },
                }
            )
            self.created.add(self.sol.api_version, "Sandbox", self.sandbox_cr)
            self.sandboxed = self.owned_pod()
        else:
            self.cluster.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": self.sandboxed} | meta,
                    "spec": self.pod_spec(self.sol.runtime_class, None),
                }
            )
            self.created.add("v1", "Pod", self.sandboxed)
        pod = self.wait_running(self.sandboxed)
        self.node = str((pod.get("spec") or {}).get("nodeName") or "")
        if (
            self.sol.runtime_class
            and (pod.get("spec") or {}).get("runtimeClassName") != self.sol.runtime_class
        ):
            self.ctx.fail(
                f"sandboxed pod {self.sandboxed} runs without RuntimeClass {self.sol.runtime_class}"
            )
        node = self.cluster.get("v1", "Node", self.node) or {"metadata": {"name": self.node}}
        self.cluster.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": self.control} | meta,
                "spec": self.pod_spec("", node),
            }
        )
        self.created.add("v1", "Pod", self.control)
        self.wait_running(self.control)
        self.exec(self.control, f"echo kaic > {shlex.quote(self.marker)}")
        self.control_probe = self.probe(self.control)
        self.sandboxed_probe = self.probe(self.sandboxed)

    def owned_pod(self) -> str:
        def mine(pods: list[KubeObject]) -> bool:
            return any(self._owned(p) for p in pods)

        try:
            pods = self.cluster.wait_list(
                "v1",
                "Pod",
                self.ns,
                mine,
                timeout=self.ctx.budget(self.timeout),
                what=f"a pod of Sandbox {self.sandbox_cr}",
            )
        except ClusterError as e:
            self.ctx.fail(f"Sandbox {self.sandbox_cr} made no pod: {e}")
        return name_of(next(p for p in pods if self._owned(p)))

    def _owned(self, pod: KubeObject) -> bool:
        return any(
            o.get("kind") == "Sandbox"
            and o.get("name") == self.sandbox_cr
            and str(o.get("apiVersion", "")).startswith(AGENT_SANDBOX_GROUP + "/")
            for o in (pod.get("metadata") or {}).get("ownerReferences") or []
        )

    def wait_running(self, pod: str) -> KubeObject:
        try:
            obj = self.cluster.wait_for(
                "v1",
                "Pod",
                pod,
                self.ns,
                pod_started,
                timeout=self.ctx.budget(self.timeout),
                what=f"pod {pod} to run",
            )
        except ClusterError as e:
            self.ctx.fail(f"pod {pod} did not run: {e}")
        assert obj is not None
        return obj

    def exec(self, pod: str, script: str) -> str:
        shown = f"kubectl exec -n {self.ns} {pod} -c {CONTAINER} -- sh -c {shlex.quote(script)}"
        problem = ""
        for attempt in range(PROBE_ATTEMPTS):
            if attempt:
                self.ctx.sleep(float(attempt))
            try:
                r = self.cluster.exec(
                    self.ns,
                    pod,
                    ["sh", "-c", script],
                    container=CONTAINER,
                    timeout=self.ctx.budget(self.timeout),
                )
            except ClusterError as e:
                self.transcript.append(f"$ {shown}\n(exec failed: {e})\n")
                problem = str(e)
                continue
            self.transcript.append(
                f"$ {shown}\n{r.stdout}"
                + (f"[stderr]\n{r.stderr}" if r.stderr else "")
                + f"[exit code {r.exit_code}]\n"
            )
            if r.exit_code == 0:
                return r.stdout
            problem = f"exit code {r.exit_code}: {(r.stderr or r.stdout).strip()[:200]}"
        self.ctx.error(f"exec into pod {pod} failed {PROBE_ATTEMPTS} times: {problem}")

    def probe(self, pod: str) -> Probe:
        return parse_probe(self.exec(pod, f"KAIC_MARKER={shlex.quote(self.marker)}\n{PROBE}"))

    def record_evidence(self) -> None:
        self.ctx.evidence("probe-commands.log", "\n".join(self.transcript) or "(no probe ran)\n")
        info = {
            "solution": self.sol.describe(),
            "node": self.node,
            "sandboxed": dict(self.sandboxed_probe.info),
            "control": dict(self.control_probe.info),
        }
        self.ctx.evidence("probes.json", json.dumps(info, indent=2) + "\n", "application/json")
        pods = []
        for name in [self.sandboxed, self.control]:
            try:
                o = self.cluster.get("v1", "Pod", name, self.ns)
            except ClusterError:
                o = None
            if o is not None:
                pods.append(trimmed(o))
        if pods:
            self.ctx.evidence(
                "pods.yaml", yaml.safe_dump_all(pods, sort_keys=False), "application/yaml"
            )

    def delete_all(self) -> None:
        self.created.delete_all(("Pod", "Sandbox"))
