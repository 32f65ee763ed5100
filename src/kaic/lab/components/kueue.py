"""The real Kueue controller (gang scheduling, an AI operator with admission webhooks).

Kueue is built from its Go module by ``kaic lab build`` and runs as a local process
with the lab's admin kubeconfig. Its webhook server listens on 127.0.0.1 with a serving
certificate from the lab CA; the lab writes Kueue's Mutating/ValidatingWebhookConfigurations
itself (from the module's ``config/components/webhook/manifests.yaml``) with
``clientConfig.url: https://127.0.0.1:<port>/<path>`` and the CA as ``caBundle``, so the
apiserver dials only loopback. Kueue's own certificate rotation is off, its visibility
API server is off, health and metrics listen on 127.0.0.1. Leader election is on, so its
Lease ``kueue-system/c1f6bfd2.kueue.x-k8s.io`` shows it is alive.

After it is ready the lab adds a ResourceFlavor ``kaic-gpu-pool`` (nodes labelled
``kaic.io/accelerator-pool=gpu``; all nodes when the lab has no GPU pool), a ClusterQueue
``kaic-lab`` whose quota is exactly the pool's allocatable CPU, memory and GPUs, and a
LocalQueue ``lab`` in namespace ``default``.

Owns: Kueue's configuration, certificates, webhook configurations and queues. Must not
build anything (the binary comes from the cache).
"""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import yaml

from kaic.errors import LabError
from kaic.lab import proc, programs
from kaic.lab.binaries import manifest_files
from kaic.lab.component import ProcessComponent, register
from kaic.lab.context import LabContext, probe
from kaic.lab.pki import issue_serving_cert

KUEUE_VERSION = programs.version("kueue")
NAMESPACE = "kueue-system"
LEASE = "c1f6bfd2.kueue.x-k8s.io"
CLUSTER_QUEUE = "kaic-lab"
FLAVOR = "kaic-gpu-pool"
LOCAL_QUEUE = "lab"
POOL_LABEL = "kaic.io/accelerator-pool"
WEBHOOK_GROUPS = {"kueue.x-k8s.io", "batch"}
"""Webhooks the lab registers: Kueue's own kinds and batch/v1 Jobs (the only integration
enabled)."""
LABELS = {"app.kubernetes.io/name": "kueue", "app.kubernetes.io/version": KUEUE_VERSION,
          "app.kubernetes.io/managed-by": "kaic-lab"}
KUEUE_API = "kueue.x-k8s.io/v1beta2"


def binary(kube_version: str) -> Path:
    """Where ``kaic lab build`` puts the controller for this lab version."""
    return programs.binary_of("kueue", kube_version)


def webhook_configurations(port: int, ca_pem: bytes, *, files: list[Path]
                           ) -> list[dict[str, Any]]:
    """Kueue's webhook configurations (``files``: the module's webhook manifests),
    pointed at ``https://127.0.0.1:port``."""
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    ca = base64.b64encode(ca_pem).decode()
    out = []
    for doc in docs:
        hooks = []
        for wh in doc.get("webhooks") or []:
            groups = {g for r in wh.get("rules") or [] for g in r.get("apiGroups") or []}
            if not groups or not groups <= WEBHOOK_GROUPS:
                continue
            path = wh["clientConfig"]["service"]["path"]
            wh = {**wh, "clientConfig": {"url": f"https://127.0.0.1:{port}{path}",
                                         "caBundle": ca}}
            if "batch" in groups:
                # NOTE: as Kueue's kustomize config does: never intercept system Jobs.
                wh["namespaceSelector"] = {"matchExpressions": [{
                    "key": "kubernetes.io/metadata.name", "operator": "NotIn",
                    "values": ["kube-system", NAMESPACE]}]}
            hooks.append(wh)
        name = f"kueue-{doc['metadata']['name']}"
        out.append({"apiVersion": doc["apiVersion"], "kind": doc["kind"],
                    "metadata": {"name": name, "labels": LABELS}, "webhooks": hooks})
    return out


def config(ctx: LabContext, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ctx.port('kueue-health')}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ctx.port('kueue-metrics')}"},
        "webhook": {"port": ctx.port("kueue-webhook"), "host": "127.0.0.1",
                    "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": True, "resourceName": LEASE,
                           "resourceNamespace": NAMESPACE,
                           "leaseDuration": "15s", "renewDeadline": "10s",
                           "retryPeriod": "2s"},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": ["batch/job"]},
        "featureGates": {"VisibilityOnDemand": False},
    }


@register
class KueueController(ProcessComponent):
    name = "kueue-controller"
    description = (f"the real Kueue {KUEUE_VERSION} controller (built from its module), webhooks "
                   "on 127.0.0.1, a ClusterQueue for the GPU pool")
    order = 110
    optional = True
    default = False
    ready_timeout: ClassVar[float] = 90.0

    def port_keys(self) -> tuple[str, ...]:
        return ("kueue-webhook", "kueue-health", "kueue-metrics")

    def cert_dir(self, ctx: LabContext) -> Path:
        return ctx.dir("kueue") / "certs"

    def before_start(self, ctx: LabContext) -> None:
        if "kueue" not in ctx.enabled:
            raise LabError("kueue-controller needs the kueue CRDs; do not leave out kueue")
        programs.require_binary("kueue", ctx.options.version)
        certs = self.cert_dir(ctx)
        if not (certs / "tls.crt").exists():
            crt, key = issue_serving_cert(ctx.pki, ctx.dir("kueue") / "pki", "kueue-webhook",
                                          dns=("localhost",), ips=("127.0.0.1",))
            certs.mkdir(parents=True, exist_ok=True)
            (certs / "tls.crt").write_bytes(crt.read_bytes())
            (certs / "tls.key").write_bytes(key.read_bytes())
            (certs / "tls.key").chmod(0o600)
        (ctx.dir("kueue") / "config.yaml").write_text(
            yaml.safe_dump(config(ctx, certs), sort_keys=False))
        ctx.apply([{"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": NAMESPACE, "labels": LABELS}}])

    def argv(self, ctx: LabContext) -> list[str]:
        kueue = [str(binary(ctx.options.version)),
                 f"--config={ctx.dir('kueue') / 'config.yaml'}",
                 f"--kubeconfig={ctx.kubeconfig}", "--zap-log-level=info"]
        # NOTE: with its own certificate rotation off, Kueue reads its metrics serving
        # certificate from the fixed path /etc/kueue/metrics/certs. The lab does not
        # write to the host's /etc: Kueue runs in a private mount namespace where /etc
        # is an overlay whose writable layer lives in the lab's state directory.
        d = ctx.dir("kueue")
        (d / "etc-upper").mkdir(exist_ok=True)
        (d / "etc-work").mkdir(exist_ok=True)
        certs = self.cert_dir(ctx)
        script = (f"mount -t overlay kaic-kueue-etc -o lowerdir=/etc,upperdir={d}/etc-upper,"
                  f"workdir={d}/etc-work /etc && mkdir -p /etc/kueue/metrics/certs && "
                  f"cp {certs}/tls.crt {certs}/tls.key /etc/kueue/metrics/certs/ && "
                  'exec "$@"')
        return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script,
                "kueue-in-namespace", *kueue]

    def start(self, ctx: LabContext) -> None:
        self.before_start(ctx)
        if ctx.pid(self.name) is None:
            for key in self.port_keys():
                if proc.port_in_use(ctx.port(key)):
                    raise LabError(f"port {ctx.port(key)} of {self.name} is taken; run "
                                   f"`kaic lab down --name {ctx.name}` and start again")
            pid = ctx.spawn(self.name, self.argv(ctx), self.env(ctx))
            exe = str(binary(ctx.options.version))
            # The pid becomes Kueue's own once the namespace wrapper has exec'd it;
            # record Kueue's path so liveness checks recognise the process.
            ctx.wait("kueue to start in its mount namespace",
                     lambda: _cmd(pid) == exe or _stat(pid) in (None, "Z"), timeout=15)
            if _cmd(pid) != exe:
                raise LabError("kueue-controller did not start; last log lines:\n"
                               + ctx.log_tail(self.name))
            ctx.pid_path(self.name).write_text(f"{pid}\n{exe}\n")
        ctx.wait(f"{self.name} to be ready", lambda: self.ready(ctx),
                 timeout=self.ready_timeout, alive=self.name)
        self.after_start(ctx)

    def ready(self, ctx: LabContext) -> bool:
        """Ready, and leader: /readyz answers before the leader election is won, and
        checks find a controller by its renewed Lease (webhooks, reconcilers run then)."""
        return probe(f"http://127.0.0.1:{ctx.port('kueue-health')}/readyz") and _is_leader(ctx)

    def after_start(self, ctx: LabContext) -> None:
        files = manifest_files("kueue", "webhooks", ctx.options.version)
        ctx.apply(webhook_configurations(ctx.port("kueue-webhook"),
                                         ctx.pki.ca_crt.read_bytes(), files=files))
        ctx.apply(queues(ctx))

    def healthy(self, ctx: LabContext) -> bool:
        return ctx.pid(self.name) is not None and self.ready(ctx)


def _is_leader(ctx: LabContext) -> bool:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"
    if not ctx.exists(path):
        return False
    return bool((ctx.get(path).get("spec") or {}).get("holderIdentity"))


def _cmd(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return None


def _stat(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _quantity(text: str) -> Decimal:
    units = {"Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
             "Ti": Decimal(2**40), "m": Decimal("0.001")}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * factor
    return Decimal(text)


def queues(ctx: LabContext) -> list[dict[str, Any]]:
    """ResourceFlavor, ClusterQueue (quota = the pool's allocatable) and LocalQueue."""
    nodes = ctx.get("/api/v1/nodes").get("items") or []
    pool = [n for n in nodes if n["metadata"].get("labels", {}).get(POOL_LABEL) == "gpu"]
    flavor: dict[str, Any] = {"apiVersion": KUEUE_API, "kind": "ResourceFlavor",
                              "metadata": {"name": FLAVOR, "labels": LABELS}, "spec": {}}
    if pool:
        flavor["spec"]["nodeLabels"] = {POOL_LABEL: "gpu"}
    else:
        pool = nodes
    totals: dict[str, Decimal] = {}
    for node in pool:
        for res, value in (node.get("status", {}).get("allocatable") or {}).items():
            if res in ("cpu", "memory", "nvidia.com/gpu"):
                totals[res] = totals.get(res, Decimal(0)) + _quantity(str(value))
    covered = sorted(totals)
    resources = [{"name": r, "nominalQuota": _format(r, totals[r])} for r in covered]
    cq = {"apiVersion": KUEUE_API, "kind": "ClusterQueue",
          "metadata": {"name": CLUSTER_QUEUE, "labels": LABELS},
          "spec": {"namespaceSelector": {}, "resourceGroups": [
              {"coveredResources": covered, "flavors": [{"name": FLAVOR,
                                                         "resources": resources}]}]}}
    lq = {"apiVersion": KUEUE_API, "kind": "LocalQueue",
          "metadata": {"name": LOCAL_QUEUE, "namespace": "default", "labels": LABELS},
          "spec": {"clusterQueue": CLUSTER_QUEUE}}
    return [flavor, cq, lq]


def _format(resource: str, value: Decimal) -> str:
    if resource == "memory":
        return f"{int(value // 2**20)}Mi"
    if resource == "cpu":
        return f"{int(value * 1000)}m"
    return str(int(value))
