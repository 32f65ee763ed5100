"""gang_scheduling (TestGangScheduling): an installed gang-scheduling solution runs a
multi-pod workload all-or-nothing.

Owns: detecting gang-scheduling solutions (Kueue, Volcano, KAI scheduler,
scheduler-plugins coscheduling, kube-scheduler's native Workload/PodGroup gang
scheduling), how a gang is submitted to each, and the sub-tests
``PositiveGangScheduling``, ``NegativeGangScheduling`` and ``Cleanup``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from functools import partial
from typing import Any

from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Permission,
    Resource,
    Subtest,
    check,
    exclusive,
)
from kaic.checks.controllers import ControllerFinding, find_controller
from kaic.checks.predicates import (
    node_has_blocking_taint,
    node_schedulable,
    pod_bound,
    pod_phase,
    pod_running,
)
from kaic.checks.resources import allocatable, requests_by_node
from kaic.checks.waits import Waits, dump
from kaic.cluster import parse_quantity
from kaic.cluster.api import KubeObject, has_condition, name_of, namespace_of
from kaic.errors import ClusterError, UsageError

GANG_LABEL = "kaic.io/gang"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
COMPLETE_AFTER = "kaic.io/complete-after"
POSITIVE_SIZE = 2
POSITIVE_CPU = "100m"
POD_MEMORY = "64Mi"
MAX_NEGATIVE_PODS = 1000
"""The largest oversized gang the check submits."""


@dataclass(frozen=True)
class Solution:
    """A gang-scheduling solution: the API that shows it is installed and where its
    controller runs."""

    name: str
    title: str
    api_versions: tuple[str, ...]
    kind: str
    pod_selectors: tuple[tuple[str | None, str], ...]
    lease_names: tuple[str, ...] = ()
    scheduler_name: str | None = None
    api_is_controller: bool = False
    """The API is served by the control plane itself (native gang scheduling)."""


SOLUTIONS: tuple[Solution, ...] = (
    Solution(
        "kueue",
        "Kueue",
        ("kueue.x-k8s.io/v1beta2", "kueue.x-k8s.io/v1beta1"),
        "ClusterQueue",
        ((None, "app.kubernetes.io/name=kueue,control-plane=controller-manager"),),
        ("c1f6bfd2.kueue.x-k8s.io",),
    ),
    Solution(
        "volcano",
        "Volcano",
        ("scheduling.volcano.sh/v1beta1",),
        "PodGroup",
        ((None, "app=volcano-scheduler"),),
        (),
        "volcano",
    ),
    Solution(
        "kai",
        "KAI scheduler",
        ("scheduling.run.ai/v2alpha2",),
        "PodGroup",
        ((None, "app=kai-scheduler"), (None, "app=scheduler,app.kubernetes.io/name=kai")),
        (),
        "kai-scheduler",
    ),
    Solution(
        "coscheduling",
        "scheduler-plugins coscheduling",
        ("scheduling.x-k8s.io/v1alpha1",),
        "PodGroup",
        ((None, "app=scheduler-plugins-scheduler"), ("scheduler-plugins", "component=scheduler")),
        (),
        "scheduler-plugins-scheduler",
    ),
    Solution(
        "native",
        "kube-scheduler gang scheduling (Workload/PodGroup API)",
        ("scheduling.k8s.io/v1alpha2",),
        "PodGroup",
        (("kube-system", "component=kube-scheduler"),),
        ("kube-scheduler",),
        "default-scheduler",
        api_is_controller=True,
    ),
)
BY_NAME = {s.name: s for s in SOLUTIONS}


@dataclass
class Detected:
    solution: Solution
    api_version: str | None
    controller: ControllerFinding | None = None

    @property
    def installed(self) -> bool:
        return self.api_version is not None

    @property
    def active(self) -> bool:
        if not self.installed:
            return False
        if self.solution.api_is_controller:
            return True
        return self.controller is not None and self.controller.ready

    def describe(self) -> str:
        if not self.installed:
            return (
                f"{self.solution.title}: not installed ({self.solution.kind} not served "
                f"in {' or '.join(self.solution.api_versions)})"
            )
        ctl = self.controller.detail if self.controller else "controller not looked for"
        state = "active" if self.active else "installed, controller not running"
        return f"{self.solution.title}: {state} ({self.solution.kind} in {self.api_version}; {ctl})"


def _served(ctx: CheckContext, solution: Solution) -> str | None:
    for av in solution.api_versions:
        if any(r.kind == solution.kind for r in ctx.cluster.api_resources(av)):
            return av
    return None


def detect(ctx: CheckContext, lease_window: float) -> list[Detected]:
    """Every known solution with what was found of it."""
    found = []
    for solution in SOLUTIONS:
        d = Detected(solution, _served(ctx, solution))
        if d.installed:
            d.controller = find_controller(
                ctx.cluster,
                pod_selectors=solution.pod_selectors,
                lease_names=solution.lease_names,
                lease_window=ctx.budget(lease_window),
            )
        found.append(d)
    return found


# -- gang workloads --------------------------------------------------------------------------


@dataclass
class Gang:
    """One submitted gang: its Job and companion objects."""

    name: str
    namespace: str
    size: int
    cpu: str
    job: KubeObject | None = None
    objects: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    """(apiVersion, kind, name, namespace) of everything created for it, in order."""

    @property
    def selector(self) -> str:
        return f"{GANG_LABEL}={self.name}"


def _job(
    ctx: CheckContext,
    gang: Gang,
    *,
    labels: dict[str, str],
    pod_labels: dict[str, str],
    annotations: dict[str, str],
    pod_spec_extra: dict[str, Any],
) -> KubeObject:
    image = ctx.option("gang-image") or "busybox:1.36"
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "worker",
                "image": image,
                "command": ["sh", "-c", "sleep 5"],
                "resources": {
                    "requests": {"cpu": gang.cpu, "memory": POD_MEMORY},
                    "limits": {"cpu": gang.cpu, "memory": POD_MEMORY},
                },
            }
        ],
        **pod_spec_extra,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": gang.name,
            "namespace": gang.namespace,
            "labels": {GANG_LABEL: gang.name, **labels},
        },
        "spec": {
            "parallelism": gang.size,
            "completions": gang.size,
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "labels": {GANG_LABEL: gang.name, **pod_labels},
                    # NOTE: a simulated node (the kaic lab's kwok) keeps the pod
                    # Running as long as the real container's ``sleep 5`` would.
                    "annotations": {COMPLETE_AFTER: "5s", **annotations},
                },
                "spec": pod_spec,
            },
        },
    }


def _owned_by(obj: KubeObject, uid: str) -> bool:
    return any(r.get("uid") == uid for r in obj.get("metadata", {}).get("ownerReferences") or [])


class Backend:
    """How gangs are submitted to one solution."""

    def __init__(self, ctx: CheckContext, detected: Detected, waits: Waits) -> None:
        self.ctx = ctx
        self.detected = detected
        self.api_version = detected.api_version or detected.solution.api_versions[0]
        self.waits = waits
        self.namespace = ctx.namespace
        self.shared: list[tuple[str, str, str, str | None]] = []
        """Objects shared by both gangs (deleted last)."""

    def prepare(self) -> None:
        """Create what gangs need (queues); ``UsageError``/``ClusterError`` on failure."""

    def submit(self, gang: Gang) -> None:
        raise NotImplementedError

    def check_admitted(self, gang: Gang, t: Subtest) -> None:
        """Extra proof that the solution admitted the positive gang as one unit."""

    def describe_pending(self, gang: Gang) -> str:
        """What the solution says about a gang it holds back (for evidence)."""
        return ""

    def admits(self, millis: int) -> Quota | None:
        """How many pods of ``millis`` CPU the solution's quota would admit as one gang;
        ``None`` where no quota limits CPU (it admits by what the nodes hold)."""
        return None

    def _create(self, gang: Gang | None, obj: KubeObject) -> KubeObject:
        created = self.ctx.cluster.create(obj)
        ref = (obj["apiVersion"], obj["kind"], name_of(obj), namespace_of(obj))
        (gang.objects if gang else self.shared).append(ref)
        return created


class KueueBackend(Backend):
    """A batch/v1 Job labelled with a LocalQueue; Kueue suspends it until the whole
    Workload fits the ClusterQueue's quota."""

    queue: str = ""
    cluster_queue: str = ""

    def prepare(self) -> None:
        ctx, cluster = self.ctx, self.ctx.cluster
        given_ns = ctx.option("gang-namespace")
        self.queue = ctx.option("gang-queue") or "kaic-gang"
        if given_ns:
            self.namespace = given_ns
            lq_obj = cluster.get(self.api_version, "LocalQueue", self.queue, given_ns)
            if lq_obj is None:
                raise UsageError(
                    f"--gang-namespace {given_ns}: LocalQueue {self.queue} "
                    "not found there (set --gang-queue)"
                )
            self.cluster_queue = str(lq_obj.get("spec", {}).get("clusterQueue") or "")
            return
        cq = ctx.option("gang-cluster-queue")
        if not cq:
            queues = cluster.list(self.api_version, "ClusterQueue")
            if len(queues) == 1:
                cq = name_of(queues[0])
            elif queues:
                names = ", ".join(sorted(name_of(q) for q in queues))
                raise UsageError(
                    f"several Kueue ClusterQueues ({names}); choose one with --gang-cluster-queue"
                )
            else:
                raise UsageError(
                    "Kueue has no ClusterQueue; create one for the cluster's "
                    "nodes or pass --gang-namespace with a LocalQueue"
                )
        elif cluster.get(self.api_version, "ClusterQueue", cq) is None:
            raise UsageError(f"--gang-cluster-queue {cq}: no such ClusterQueue")
        self.cluster_queue = cq
        lq = {
            "apiVersion": self.api_version,
            "kind": "LocalQueue",
            "metadata": {"name": self.queue, "namespace": self.namespace},
            "spec": {"clusterQueue": cq},
        }
        self._create(None, lq)
        timeout = ctx.budget(ctx.float_option("gang-admit-timeout"))
        self.waits.timed(
            f"LocalQueue {self.queue} -> ClusterQueue {cq} Active",
            timeout,
            lambda: cluster.wait_for(
                self.api_version,
                "LocalQueue",
                self.queue,
                self.namespace,
                lambda o: has_condition(o, "Active"),
                timeout=timeout,
                what=f"LocalQueue {self.queue} to become Active",
            ),
        )

    def submit(self, gang: Gang) -> None:
        job = _job(
            self.ctx,
            gang,
            labels={KUEUE_QUEUE_LABEL: self.queue},
            pod_labels={},
            annotations={},
            pod_spec_extra={},
        )
        job["spec"]["suspend"] = False
        gang.job = self._create(gang, job)

    def workload(self, gang: Gang) -> KubeObject | None:
        uid = (gang.job or {}).get("metadata", {}).get("uid")
        for wl in self.ctx.cluster.list(self.api_version, "Workload", gang.namespace):
            if uid and _owned_by(wl, uid):
                return wl
        return None

    def check_admitted(self, gang: Gang, t: Subtest) -> None:
        suspended = bool((gang.job or {}).get("spec", {}).get("suspend"))
        t.log(f"Job stored with suspend={suspended} (submitted with suspend=false)")
        t.require(
            suspended,
            "the Job was not suspended when it was created: Kueue's "
            "admission webhook for batch/v1 Jobs did not act, so pods could start "
            "before the gang is admitted",
        )
        wl = self.workload(gang)
        t.require(wl is not None, f"Kueue created no Workload for Job {gang.name}")
        assert wl is not None
        self.ctx.evidence("positive-workload.json", dump(wl), "application/json")
        t.require(
            has_condition(wl, "Admitted") or has_condition(wl, "Finished"),
            f"Workload {name_of(wl)} was never admitted",
        )
        counts = [
            int(a.get("count", 0))
            for a in wl.get("status", {}).get("admission", {}).get("podSetAssignments") or []
        ]
        t.log(f"Workload {name_of(wl)} admitted with pod counts {counts}")
        if counts:
            t.require(
                sum(counts) == gang.size,
                f"Workload admitted {sum(counts)} pods, expected the whole gang of {gang.size}",
            )

    def admits(self, millis: int) -> Quota | None:
        cluster = self.ctx.cluster
        queues = cluster.list(self.api_version, "ClusterQueue")
        cq = next((q for q in queues if name_of(q) == self.cluster_queue), None)
        if cq is None:
            return None
        own = cpu_quota(cq)
        if own is None:
            return None
        nominal, borrowing = own
        total, source = nominal, f"ClusterQueue {self.cluster_queue}"
        cohort = _cohort(cq)
        if cohort:
            pooled = sum(
                ((cpu_quota(q) or (Decimal(0), None))[0] for q in queues if _cohort(q) == cohort),
                Decimal(0),
            )
            total = min(pooled, nominal + borrowing) if borrowing is not None else pooled
            source += f" (with what it may borrow in cohort {cohort})"
        pods = int((total * 1000 // millis).to_integral_value(rounding=ROUND_FLOOR))
        return Quota(pods, f"{source} admits {_cpus(total)} CPU ({pods} such pods)")

    def describe_pending(self, gang: Gang) -> str:
        wl = self.workload(gang)
        if wl is None:
            return "no Workload"
        self.ctx.evidence("negative-workload.json", dump(wl), "application/json")
        reasons = [
            f"{c.get('type')}={c.get('status')} ({c.get('message', '')})"
            for c in wl.get("status", {}).get("conditions") or []
        ]
        return f"Workload {name_of(wl)}: " + ("; ".join(reasons) or "no conditions")


def _cohort(cq: KubeObject) -> str:
    spec = cq.get("spec", {})
    return str(spec.get("cohortName") or spec.get("cohort") or "")


def cpu_quota(cq: KubeObject) -> tuple[Decimal, Decimal | None] | None:
    """A ClusterQueue's nominal CPU quota summed over its flavors, and the most it may
    borrow (``None``: no limit); ``None`` where no resource group covers ``cpu``."""
    groups = [
        g
        for g in cq.get("spec", {}).get("resourceGroups") or []
        if "cpu" in g.get("coveredResources", [])
    ]
    if not groups:
        return None
    nominal, borrowing, unlimited = Decimal(0), Decimal(0), False
    for group in groups:
        for flavor in group.get("flavors") or []:
            for res in flavor.get("resources") or []:
                if res.get("name") != "cpu":
                    continue
                nominal += parse_quantity(str(res.get("nominalQuota", "0")))
                if res.get("borrowingLimit") is None:
                    unlimited = True
                else:
                    borrowing += parse_quantity(str(res["borrowingLimit"]))
    return nominal, None if unlimited else borrowing


def _cpus(value: Decimal) -> str:
    return str(value.normalize()) if value == value.to_integral_value() else f"{value:f}"


class PodGroupBackend(Backend):
    """A PodGroup with a minimum member count and a Job whose pods join it."""

    def podgroup(self, gang: Gang) -> KubeObject:
        raise NotImplementedError

    def join(self, gang: Gang) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        """(pod labels, pod annotations, extra pod spec) that put a pod in the group."""
        raise NotImplementedError

    def scheduler(self) -> str | None:
        return self.ctx.option("gang-scheduler-name") or self.detected.solution.scheduler_name

    def submit(self, gang: Gang) -> None:
        pg = self.podgroup(gang)
        pg.setdefault("metadata", {}).update({"name": gang.name, "namespace": gang.namespace})
        self._create(gang, pg)
        labels, annotations, extra = self.join(gang)
        sched = self.scheduler()
        if sched and sched != "default-scheduler":
            extra = {**extra, "schedulerName": sched}
        gang.job = self._create(
            gang,
            _job(
                self.ctx,
                gang,
                labels={},
                pod_labels=labels,
                annotations=annotations,
                pod_spec_extra=extra,
            ),
        )

    def describe_pending(self, gang: Gang) -> str:
        pg = self.ctx.cluster.get(self.api_version, "PodGroup", gang.name, gang.namespace)
        if pg is None:
            return "PodGroup gone"
        self.ctx.evidence("negative-podgroup.json", dump(pg), "application/json")
        return f"PodGroup {gang.name} status: {dump(pg.get('status', {}))}"


class VolcanoBackend(PodGroupBackend):
    def podgroup(self, gang: Gang) -> KubeObject:
        return {
            "apiVersion": self.api_version,
            "kind": "PodGroup",
            "spec": {"minMember": gang.size, "queue": self.ctx.option("gang-queue") or "default"},
        }

    def join(self, gang: Gang) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        return {}, {"scheduling.k8s.io/group-name": gang.name}, {}


class KaiBackend(PodGroupBackend):
    def podgroup(self, gang: Gang) -> KubeObject:
        return {
            "apiVersion": self.api_version,
            "kind": "PodGroup",
            "spec": {
                "minMember": gang.size,
                "queue": self.ctx.option("gang-queue") or "default-queue",
            },
        }

    def join(self, gang: Gang) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        queue = self.ctx.option("gang-queue") or "default-queue"
        return {"kai.scheduler/queue": queue}, {"pod-group-name": gang.name}, {}


class CoschedulingBackend(PodGroupBackend):
    def podgroup(self, gang: Gang) -> KubeObject:
        return {
            "apiVersion": self.api_version,
            "kind": "PodGroup",
            "spec": {"minMember": gang.size},
        }

    def join(self, gang: Gang) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        return {"scheduling.x-k8s.io/pod-group": gang.name}, {}, {}


class NativeBackend(PodGroupBackend):
    def podgroup(self, gang: Gang) -> KubeObject:
        return {
            "apiVersion": self.api_version,
            "kind": "PodGroup",
            "spec": {"schedulingPolicy": {"gang": {"minCount": gang.size}}},
        }

    def join(self, gang: Gang) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
        return {}, {}, {"schedulingGroup": {"podGroupName": gang.name}}


BACKENDS: dict[str, Callable[[CheckContext, Detected, Waits], Backend]] = {
    "kueue": KueueBackend,
    "volcano": VolcanoBackend,
    "kai": KaiBackend,
    "coscheduling": CoschedulingBackend,
    "native": NativeBackend,
}


# -- sizing the gang that must not fit ---------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """What a solution's quota admits of the oversized gang's pods."""

    pods: int
    detail: str


@dataclass(frozen=True)
class Shape:
    size: int
    cpu_millis: int
    fits: int
    detail: str


def negative_shape(ctx: CheckContext, admits: Callable[[int], Quota | None]) -> Shape:
    """A gang one pod larger than the cluster can hold: each pod asks for the largest
    free CPU of any schedulable node, so a node holds at most one, and the gang has one
    pod more than the nodes where one fits. Without gang semantics some of its pods
    would be bound, so the negative case can fail.

    A solution that admits by quota (Kueue) admits a gang as soon as the quota holds it,
    whatever the nodes have free; the gang then also has one pod more than the quota
    (``admits``) holds, so that it is the solution's own all-or-nothing that keeps it
    back."""
    cluster = ctx.cluster
    nodes = [
        n
        for n in cluster.list("v1", "Node")
        if node_schedulable(n) and not node_has_blocking_taint(n)
    ]
    if not nodes:
        raise ClusterError("no Ready, schedulable node without NoSchedule taints")
    used = requests_by_node(cluster.list("v1", "Pod"), "cpu")
    free = {name_of(n): allocatable(n, "cpu") - used.get(name_of(n), Decimal(0)) for n in nodes}
    slot = max(free.values())
    millis = int((slot * 1000).to_integral_value(rounding=ROUND_FLOOR))
    if millis <= 0:
        raise ClusterError("no schedulable node has free CPU for a gang pod")
    fits = sum(1 for f in free.values() if f * 1000 >= millis)
    detail = (
        f"{len(nodes)} schedulable nodes, free CPU per node "
        f"{ {k: str(v) for k, v in sorted(free.items())} }; each gang pod asks for "
        f"{millis}m CPU, {fits} such pods fit"
    )
    quota = admits(millis)
    held = fits
    if quota is not None:
        detail += f"; {quota.detail}"
        held = max(fits, quota.pods)
        if quota.pods > fits:
            detail += (
                f"; note: a gang of {fits + 1} would be admitted although the nodes "
                "cannot hold it, and its pods would be partly bound unless the solution "
                "evicts gangs that do not start (Kueue's waitForPodsReady)"
            )
    if held + 1 > MAX_NEGATIVE_PODS:
        raise UsageError(
            f"a gang that cannot fit would need more than {MAX_NEGATIVE_PODS} pods "
            f"of {millis}m CPU ({detail}); choose a queue with a smaller quota "
            "(--gang-cluster-queue, or --gang-namespace with --gang-queue)"
        )
    given = ctx.option("gang-negative-size")
    size = held + 1
    if given:
        try:
            size = int(given)
        except ValueError:
            raise UsageError(
                f"--gang-negative-size must be a whole number, got {given!r}"
            ) from None
        if size <= fits:
            raise UsageError(
                f"--gang-negative-size {size} is not larger than what the "
                f"cluster can hold ({fits} pods of {millis}m CPU)"
            )
        if size <= held and quota is not None:
            raise UsageError(f"--gang-negative-size {size} is admitted by quota: {quota.detail}")
    detail += f", the gang has {size}"
    return Shape(size, millis, fits, detail)


# -- the check -----------------------------------------------------------------------------------

OPTIONS = (
    CheckOption(
        "gang-solution",
        "gang-scheduling solution to test: auto, kueue, volcano, kai, coscheduling or native",
        default="auto",
    ),
    CheckOption(
        "gang-queue",
        "Kueue LocalQueue name (created unless --gang-namespace), or the Volcano/KAI queue",
        default=None,
    ),
    CheckOption(
        "gang-cluster-queue",
        "Kueue ClusterQueue for the LocalQueue the check creates (default: the only one)",
        default=None,
    ),
    CheckOption(
        "gang-namespace",
        "pre-made namespace to run the gangs in (with the "
        "LocalQueue of --gang-queue); default: the check's own",
        default=None,
    ),
    CheckOption(
        "gang-scheduler-name",
        "schedulerName for PodGroup-based solutions (default per solution)",
        default=None,
    ),
    CheckOption("gang-image", "image of the gang pods", default="busybox:1.36"),
    CheckOption(
        "gang-negative-size",
        "pods in the gang that must not fit (default: one more than the cluster holds)",
        default=None,
        kind="integer",
    ),
    CheckOption(
        "gang-negative-window",
        "seconds the oversized gang must stay without any bound or running pod",
        default="30",
    ),
    CheckOption(
        "gang-admit-timeout", "seconds for the gang of 2 to be admitted and complete", default="180"
    ),
    CheckOption(
        "gang-cleanup-timeout", "seconds for the gangs' objects and pods to be gone", default="120"
    ),
    CheckOption(
        "gang-lease-window",
        "seconds to watch a controller's leader-election Lease for a renewal when it has no pods",
        default="20",
    ),
)


@check(
    "gang_scheduling",
    test="TestGangScheduling",
    # NOTE: not the autoscaled pool: its gangs are sized on untainted nodes only, and
    # its pods tolerate no taint, so a dedicated pool neither serves nor grows for them.
    locks=exclusive(Resource.NODE_CAPACITY, Resource.NODE_POOL, Resource.KUEUE_QUEUES),
    options=OPTIONS,
    timeout_s=600,
    permissions=(
        Permission("create", "jobs", "batch"),
        Permission("delete", "jobs", "batch"),
        Permission("list", "pods"),
        Permission("list", "nodes", namespaced=False),
        Permission("list", "customresourcedefinitions", "apiextensions.k8s.io", namespaced=False),
    ),
)
def gang_scheduling(ctx: CheckContext) -> None:
    """A gang of pods is admitted and runs all together, and a gang larger than the
    cluster gets no pod bound or running, under an installed gang-scheduling solution."""
    waits = Waits()
    choice = (ctx.option("gang-solution") or "auto").lower()
    if choice != "auto" and choice not in BY_NAME:
        raise UsageError(
            f"--gang-solution must be auto or one of {', '.join(BY_NAME)}, got {choice!r}"
        )
    found = detect(ctx, ctx.float_option("gang-lease-window"))
    ctx.evidence("detected-solutions.txt", "\n".join(d.describe() for d in found) + "\n")
    for d in found:
        ctx.log(d.describe())
    if choice == "auto":
        active = [d for d in found if d.active]
        if not active:
            installed = [d.describe() for d in found if d.installed]
            ctx.fail(
                "no gang-scheduling solution is running (looked for "
                f"{', '.join(s.title for s in SOLUTIONS)})"
                + (f"; found only: {'; '.join(installed)}" if installed else "")
            )
        chosen = active[0]
    else:
        chosen = next(d for d in found if d.solution.name == choice)
        if not chosen.installed:
            ctx.fail(f"--gang-solution {choice}: {chosen.describe()}")
        if not chosen.active:
            ctx.log(f"warning: {chosen.describe()}; testing it anyway")
    ctx.log(f"testing gang scheduling with {chosen.solution.title}")
    backend = BACKENDS[chosen.solution.name](ctx, chosen, waits)
    gangs: list[Gang] = []
    try:
        backend.prepare()
        _positive(ctx, backend, gangs, waits)
        _negative(ctx, backend, gangs, waits)
    finally:
        _cleanup(ctx, backend, gangs, waits)
        waits.save(ctx)


def _suffix(ctx: CheckContext) -> str:
    return "".join(c for c in ctx.run_id.lower() if c.isalnum())[-8:]


def _pods(ctx: CheckContext, gang: Gang) -> list[KubeObject]:
    return ctx.cluster.list("v1", "Pod", gang.namespace, label_selector=gang.selector)


def _positive(ctx: CheckContext, backend: Backend, gangs: list[Gang], waits: Waits) -> None:
    with ctx.subtest("PositiveGangScheduling") as t:
        gang = Gang(f"kaic-gang-ok-{_suffix(ctx)}", backend.namespace, POSITIVE_SIZE, POSITIVE_CPU)
        gangs.append(gang)
        backend.submit(gang)
        t.log(f"submitted Job {gang.namespace}/{gang.name}: {gang.size} pods of {gang.cpu} CPU")
        timeout = ctx.budget(ctx.float_option("gang-admit-timeout"))
        began = time.monotonic()
        most_running = 0
        pods: list[KubeObject] = []
        for pods in ctx.cluster.watch_list(
            "v1", "Pod", gang.namespace, timeout=timeout, label_selector=gang.selector
        ):
            most_running = max(
                most_running, sum(1 for p in pods if pod_bound(p) and pod_running(p))
            )
            if sum(1 for p in pods if pod_phase(p) == "Succeeded") >= gang.size:
                break
        else:
            waits.record(
                f"positive gang {gang.name}: all pods Succeeded",
                timeout,
                time.monotonic() - began,
                "timed out",
            )
            ctx.evidence("positive-pods.json", dump(pods), "application/json")
            pending = backend.describe_pending(gang)
            t.fail(
                f"the gang of {gang.size} did not complete within {timeout:.0f}s "
                f"({len(pods)} pods, {sum(map(pod_bound, pods))} bound)"
                + (f"; {pending}" if pending else "")
            )
        waits.record(
            f"positive gang {gang.name}: all pods Succeeded",
            timeout,
            time.monotonic() - began,
            "ok",
        )
        t.log(f"{most_running} of {gang.size} pods were seen Running at the same time")
        rest = ctx.budget(timeout)
        job = waits.timed(
            f"positive gang Job {gang.name} Complete",
            rest,
            lambda: ctx.cluster.wait_for(
                "batch/v1",
                "Job",
                gang.name,
                gang.namespace,
                lambda o: has_condition(o, "Complete") or has_condition(o, "Failed"),
                timeout=rest,
                what=f"Job {gang.name} to complete",
            ),
        )
        ctx.evidence("positive-job.json", dump(job), "application/json")
        t.require(
            has_condition(job, "Complete"),
            f"Job {gang.name} failed: {dump((job or {}).get('status', {}).get('conditions'))}",
        )
        backend.check_admitted(gang, t)
        pods = _pods(ctx, gang)
        ctx.evidence("positive-pods.json", dump(pods), "application/json")
        bound = [p for p in pods if pod_bound(p)]
        succeeded = [p for p in pods if pod_phase(p) == "Succeeded"]
        t.log(
            "pods: "
            + ", ".join(
                f"{name_of(p)} on {p['spec'].get('nodeName')} ({p.get('status', {}).get('phase')})"
                for p in pods
            )
        )
        t.require(
            len(bound) >= gang.size,
            f"only {len(bound)} of {gang.size} gang pods were bound to a node",
        )
        t.require(
            len(succeeded) >= gang.size, f"only {len(succeeded)} of {gang.size} gang pods succeeded"
        )


def _negative(ctx: CheckContext, backend: Backend, gangs: list[Gang], waits: Waits) -> None:
    with ctx.subtest("NegativeGangScheduling") as t:
        shape = negative_shape(ctx, backend.admits)
        t.log(shape.detail)
        ctx.evidence("negative-shape.txt", shape.detail + "\n")
        gang = Gang(
            f"kaic-gang-big-{_suffix(ctx)}", backend.namespace, shape.size, f"{shape.cpu_millis}m"
        )
        gangs.append(gang)
        backend.submit(gang)
        window = ctx.float_option("gang-negative-window")
        if ctx.remaining() < window:
            t.error(f"not enough time left in the check for a {window:.0f}s window")
        created = 0
        began = time.monotonic()
        for pods in ctx.cluster.watch_list(
            "v1", "Pod", gang.namespace, timeout=window, label_selector=gang.selector
        ):
            created = max(created, len(pods))
            bad = [p for p in pods if pod_bound(p) or pod_running(p)]
            if bad:
                took = time.monotonic() - began
                waits.record(
                    f"negative gang {gang.name} observation window",
                    window,
                    took,
                    f"{len(bad)} pods bound/running after {took:.1f}s",
                )
                ctx.evidence("negative-pods.json", dump(pods), "application/json")
                where = ", ".join(
                    f"{name_of(p)} on {p['spec'].get('nodeName') or '-'}" for p in bad
                )
                t.fail(
                    f"partial scheduling: {len(bad)} of {gang.size} pods of a gang that "
                    f"cannot fit were bound or running after {took:.1f}s ({where})"
                )
        waits.record(
            f"negative gang {gang.name} observation window",
            window,
            time.monotonic() - began,
            f"no pod bound or running; {created} pods existed",
        )
        pending = backend.describe_pending(gang)
        t.log(
            f"no pod of the gang of {gang.size} was bound or running for {window:.0f}s "
            f"({created} pods existed)" + (f"; {pending}" if pending else "")
        )


def _cleanup(ctx: CheckContext, backend: Backend, gangs: list[Gang], waits: Waits) -> None:
    if not gangs and not backend.shared:
        return
    with ctx.subtest("Cleanup") as t:
        timeout = max(ctx.float_option("gang-cleanup-timeout"), 1.0)
        problems: list[str] = []
        refs = [r for g in gangs for r in reversed(g.objects)] + list(reversed(backend.shared))
        for api_version, kind, name, ns in refs:
            try:
                waits.timed(
                    f"delete {kind} {name}",
                    timeout,
                    partial(ctx.cluster.delete, api_version, kind, name, ns, wait_timeout=timeout),
                )
            except ClusterError as e:
                problems.append(f"{kind} {name}: {e}")
        for gang in gangs:
            try:
                waits.timed(
                    f"pods of {gang.name} gone",
                    timeout,
                    partial(
                        ctx.cluster.wait_list,
                        "v1",
                        "Pod",
                        gang.namespace,
                        _empty,
                        timeout=timeout,
                        what=f"pods of gang {gang.name} to be deleted",
                        label_selector=gang.selector,
                    ),
                )
            except ClusterError as e:
                problems.append(str(e))
            uid = (gang.job or {}).get("metadata", {}).get("uid")
            if isinstance(backend, KueueBackend) and uid:
                try:
                    waits.timed(
                        f"Kueue Workload of {gang.name} gone",
                        timeout,
                        partial(
                            ctx.cluster.wait_list,
                            backend.api_version,
                            "Workload",
                            gang.namespace,
                            partial(_none_owned_by, uid),
                            timeout=timeout,
                            what=f"the Kueue Workload of {gang.name} to be deleted",
                        ),
                    )
                except ClusterError as e:
                    problems.append(str(e))
        if problems:
            t.fail("resources not released: " + "; ".join(problems))
        t.log(f"deleted {len(refs)} objects; no gang pods remain")


def _empty(objects: list[KubeObject]) -> bool:
    return not objects


def _none_owned_by(uid: str, objects: list[KubeObject]) -> bool:
    return not any(_owned_by(o, uid) for o in objects)
