"""robust_controller (TestRobustCRDControllerOperation): an installed AI operator runs,
its CRDs are established, its admission webhooks reject invalid custom resources, and
its controller reconciles valid ones.

Owns: detecting AI operators (Kueue, JobSet, Kubeflow Trainer, Kubeflow Training
Operator, KubeRay, LeaderWorkerSet, KServe, Volcano), the per-operator procedure (which
invalid and valid custom resources, which status shows reconciliation), and the
sub-tests ``OperatorPodsRunning``, ``CRDRegistered``, ``WebhookOperational``,
``WebhookRejectsInvalidCR`` and ``ControllerReconcilesCR``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kaic.checks.base import (
    CheckContext,
    CheckOption,
    Permission,
    Resource,
    check,
    exclusive,
    shared,
)
from kaic.checks.controllers import ControllerFinding, find_controller, try_create, version_of
from kaic.checks.waits import Waits, dump
from kaic.cluster.api import KubeObject, condition, has_condition, name_of
from kaic.errors import ClusterError, UsageError, WaitTimeoutError

CRD_API = "apiextensions.k8s.io/v1"
ADMISSION_API = "admissionregistration.k8s.io/v1"


@dataclass
class Step:
    """One object to create while proving reconciliation, and the status to wait for."""

    obj: KubeObject
    done: Callable[[KubeObject | None], bool] | None = None
    promise: str = ""


@dataclass(frozen=True)
class Operator:
    """What kaic knows about one AI operator."""

    name: str
    title: str
    group: str
    crds: tuple[str, ...]
    """CRDs that must be Established; the first one marks the operator as installed."""
    pod_selectors: tuple[tuple[str | None, str], ...]
    lease_names: tuple[str, ...] = ()
    invalid: Callable[[CheckContext, str], KubeObject] | None = None
    """An object its webhook must deny (args: context, namespace)."""
    valid: Callable[[CheckContext, str], list[Step]] | None = None
    """Objects to create in order, each with the status its controller must reach."""
    api_version: str = ""
    delete_order: tuple[str, ...] = ()
    """Kinds in the order their objects are deleted (default: reverse creation)."""


def _meta(name: str, namespace: str | None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if namespace:
        md["namespace"] = namespace
    return md


def _suffix(ctx: CheckContext) -> str:
    """A short, DNS-safe tail of the run id (cluster-scoped names must not collide)."""
    return "".join(c for c in ctx.run_id.lower() if c.isalnum())[-8:]


# -- Kueue ----------------------------------------------------------------------------------

KUEUE_API = "kueue.x-k8s.io/v1beta2"


def _kueue_invalid(ctx: CheckContext, namespace: str) -> KubeObject:
    # NOTE: a negative nominalQuota passes the CRD's quantity pattern; only Kueue's
    # validating webhook refuses it ("must be greater than or equal to 0").
    return {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": _meta(f"kaic-invalid-{_suffix(ctx)}", None),
        "spec": {
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu"],
                    "flavors": [
                        {
                            "name": f"kaic-rf-{_suffix(ctx)}",
                            "resources": [{"name": "cpu", "nominalQuota": "-1"}],
                        }
                    ],
                }
            ],
        },
    }


def _active_is(status: str, reason: str | None = None) -> Callable[[KubeObject | None], bool]:
    def done(obj: KubeObject | None) -> bool:
        c = condition(obj, "Active")
        return (
            c is not None
            and c.get("status") == status
            and (reason is None or c.get("reason") == reason)
        )

    return done


def _kueue_valid(ctx: CheckContext, namespace: str) -> list[Step]:
    rf, cq, lq = (f"kaic-rf-{_suffix(ctx)}", f"kaic-cq-{_suffix(ctx)}", f"kaic-lq-{_suffix(ctx)}")
    return [
        Step(
            {
                "apiVersion": KUEUE_API,
                "kind": "ClusterQueue",
                "metadata": _meta(cq, None),
                "spec": {
                    "namespaceSelector": {},
                    "resourceGroups": [
                        {
                            "coveredResources": ["cpu"],
                            "flavors": [
                                {"name": rf, "resources": [{"name": "cpu", "nominalQuota": "1"}]}
                            ],
                        }
                    ],
                },
            },
            _active_is("False", "FlavorNotFound"),
            "ClusterQueue whose ResourceFlavor is missing: Active=False/FlavorNotFound",
        ),
        Step(
            {
                "apiVersion": KUEUE_API,
                "kind": "ResourceFlavor",
                "metadata": _meta(rf, None),
                "spec": {},
            }
        ),
        Step(
            {"apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": {"name": cq}},
            _active_is("True"),
            "the same ClusterQueue once its flavor exists: Active=True",
        ),
        Step(
            {
                "apiVersion": KUEUE_API,
                "kind": "LocalQueue",
                "metadata": _meta(lq, namespace),
                "spec": {"clusterQueue": cq},
            },
            _active_is("True"),
            "LocalQueue pointing at it: Active=True",
        ),
    ]


# -- JobSet ---------------------------------------------------------------------------------

JOBSET_API = "jobset.x-k8s.io/v1alpha2"


def _jobset(ctx: CheckContext, name: str, namespace: str) -> KubeObject:
    return {
        "apiVersion": JOBSET_API,
        "kind": "JobSet",
        "metadata": _meta(name, namespace),
        "spec": {
            "replicatedJobs": [
                {
                    "name": "worker",
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": 1,
                            "completions": 1,
                            "backoffLimit": 0,
                            "template": {
                                "spec": {
                                    "restartPolicy": "Never",
                                    "containers": [
                                        {
                                            "name": "worker",
                                            "image": "busybox:1.36",
                                            "command": ["true"],
                                            "resources": {
                                                "requests": {"cpu": "10m", "memory": "16Mi"}
                                            },
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ]
        },
    }


def _jobset_invalid(ctx: CheckContext, namespace: str) -> KubeObject:
    obj = _jobset(ctx, f"kaic-invalid-{_suffix(ctx)}", namespace)
    obj["spec"]["successPolicy"] = {"operator": "All", "targetReplicatedJobs": ["does-not-exist"]}
    return obj


def _jobset_valid(ctx: CheckContext, namespace: str) -> list[Step]:
    return [
        Step(
            _jobset(ctx, f"kaic-js-{_suffix(ctx)}", namespace),
            lambda o: has_condition(o, "Completed"),
            "JobSet reaches Completed",
        )
    ]


# -- Kubeflow Trainer (the upstream test's operator) ------------------------------------------

TRAINER_API = "trainer.kubeflow.org/v1alpha1"


def _trainjob(ctx: CheckContext, name: str, namespace: str, runtime: str) -> KubeObject:
    return {
        "apiVersion": TRAINER_API,
        "kind": "TrainJob",
        "metadata": _meta(name, namespace),
        "spec": {
            "runtimeRef": {
                "name": runtime,
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
            }
        },
    }


def _trainer_invalid(ctx: CheckContext, namespace: str) -> KubeObject:
    return _trainjob(ctx, f"kaic-invalid-{_suffix(ctx)}", namespace, "does-not-exist-runtime")


def _trainer_valid(ctx: CheckContext, namespace: str) -> list[Step]:
    runtime = ctx.option("operator-trainer-runtime") or "torch-distributed"
    return [
        Step(
            _trainjob(ctx, f"kaic-tj-{_suffix(ctx)}", namespace, runtime),
            lambda o: has_condition(o, "Complete"),
            f"TrainJob on {runtime} Complete",
        )
    ]


OPERATORS: tuple[Operator, ...] = (
    Operator(
        "kueue",
        "Kueue",
        "kueue.x-k8s.io",
        (
            "clusterqueues.kueue.x-k8s.io",
            "localqueues.kueue.x-k8s.io",
            "resourceflavors.kueue.x-k8s.io",
            "workloads.kueue.x-k8s.io",
        ),
        ((None, "app.kubernetes.io/name=kueue,control-plane=controller-manager"),),
        ("c1f6bfd2.kueue.x-k8s.io",),
        _kueue_invalid,
        _kueue_valid,
        KUEUE_API,
        # NOTE: a ResourceFlavor in use keeps its finalizer until its ClusterQueue is gone.
        ("LocalQueue", "ClusterQueue", "ResourceFlavor"),
    ),
    Operator(
        "jobset",
        "JobSet",
        "jobset.x-k8s.io",
        ("jobsets.jobset.x-k8s.io",),
        ((None, "app.kubernetes.io/name=jobset,control-plane=controller-manager"),),
        ("6d4f6a47.jobset.x-k8s.io",),
        _jobset_invalid,
        _jobset_valid,
        JOBSET_API,
    ),
    Operator(
        "kubeflow-trainer",
        "Kubeflow Trainer",
        "trainer.kubeflow.org",
        ("trainjobs.trainer.kubeflow.org", "clustertrainingruntimes.trainer.kubeflow.org"),
        (("kubeflow-system", "app.kubernetes.io/name=kubeflow-trainer"),),
        (),
        _trainer_invalid,
        _trainer_valid,
        TRAINER_API,
    ),
    Operator(
        "training-operator",
        "Kubeflow Training Operator",
        "kubeflow.org",
        ("pytorchjobs.kubeflow.org",),
        ((None, "control-plane=kubeflow-training-operator"),),
    ),
    Operator(
        "kuberay",
        "KubeRay",
        "ray.io",
        ("rayclusters.ray.io",),
        ((None, "app.kubernetes.io/name=kuberay-operator"),),
    ),
    Operator(
        "lws",
        "LeaderWorkerSet",
        "leaderworkerset.x-k8s.io",
        ("leaderworkersets.leaderworkerset.x-k8s.io",),
        ((None, "app.kubernetes.io/name=lws,control-plane=controller-manager"),),
    ),
    Operator(
        "kserve",
        "KServe",
        "serving.kserve.io",
        ("inferenceservices.serving.kserve.io",),
        ((None, "control-plane=kserve-controller-manager"),),
    ),
    Operator(
        "volcano",
        "Volcano",
        "batch.volcano.sh",
        ("jobs.batch.volcano.sh",),
        ((None, "app=volcano-controller"),),
    ),
)
BY_NAME = {o.name: o for o in OPERATORS}


@dataclass
class Found:
    operator: Operator
    crd: KubeObject | None
    controller: ControllerFinding | None = None
    version: str | None = None
    webhooks: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(configuration kind, configuration name, webhook) of this operator's webhooks."""

    @property
    def installed(self) -> bool:
        return self.crd is not None

    @property
    def running(self) -> bool:
        return self.controller is not None and self.controller.ready

    def describe(self) -> str:
        op = self.operator
        if not self.installed:
            return f"{op.title}: not installed (no CRD {op.crds[0]})"
        ctl = self.controller.detail if self.controller else "controller not looked for"
        return (
            f"{op.title} {self.version or '(version unknown)'}: "
            f"{'running' if self.running else 'controller not running'} ({ctl})"
        )


def _webhooks_of(ctx: CheckContext, op: Operator) -> list[tuple[str, str, dict[str, Any]]]:
    """Admission webhooks whose rules cover the operator's API group."""
    out = []
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        for cfg in ctx.cluster.list(ADMISSION_API, kind):
            for wh in cfg.get("webhooks") or []:
                groups = {g for r in wh.get("rules") or [] for g in r.get("apiGroups") or []}
                if op.group in groups:
                    out.append((kind, name_of(cfg), wh))
    return out


def _inspect(ctx: CheckContext, op: Operator, lease_window: float) -> Found:
    crd = ctx.cluster.get(CRD_API, "CustomResourceDefinition", op.crds[0])
    found = Found(op, crd)
    if crd is None:
        return found
    selectors = op.pod_selectors
    ns = ctx.option("operator-namespace")
    if ns:
        selectors = tuple((ns, s) for _, s in selectors)
    found.controller = find_controller(
        ctx.cluster,
        pod_selectors=selectors,
        lease_names=op.lease_names,
        lease_window=ctx.budget(lease_window),
    )
    found.webhooks = _webhooks_of(ctx, op)
    configs = [ctx.cluster.get(ADMISSION_API, kind, name) for kind, name, _ in found.webhooks]
    found.version = version_of([*found.controller.pods, *(c for c in configs if c), crd])
    return found


OPTIONS = (
    CheckOption("operator", "AI operator to test: auto, " + ", ".join(BY_NAME), default="auto"),
    CheckOption(
        "operator-namespace",
        "namespace of the operator's controller pods (default: search all)",
        default=None,
    ),
    CheckOption("operator-reconcile-timeout", "seconds for each reconciled status", default="120"),
    CheckOption(
        "operator-lease-window",
        "seconds to watch the operator's leader-election Lease for a renewal when it has no pods",
        default="20",
    ),
    CheckOption(
        "operator-trainer-runtime",
        "ClusterTrainingRuntime for the Kubeflow Trainer TrainJob",
        default="torch-distributed",
    ),
)


@check(
    "robust_controller",
    test="TestRobustCRDControllerOperation",
    locks=exclusive(Resource.KUEUE_QUEUES) + shared(Resource.NODE_CAPACITY),
    options=OPTIONS,
    timeout_s=600,
    permissions=(
        Permission("list", "customresourcedefinitions", "apiextensions.k8s.io", namespaced=False),
        Permission(
            "list",
            "validatingwebhookconfigurations",
            "admissionregistration.k8s.io",
            namespaced=False,
        ),
        Permission("list", "pods"),
    ),
)
def robust_controller(ctx: CheckContext) -> None:
    """An installed AI operator's controller runs, its CRDs are established, its
    webhook denies an invalid custom resource and its controller reconciles a valid one."""
    choice = (ctx.option("operator") or "auto").lower()
    if choice != "auto" and choice not in BY_NAME:
        raise UsageError(f"--operator must be auto or one of {', '.join(BY_NAME)}, got {choice!r}")
    window = ctx.float_option("operator-lease-window")
    candidates = OPERATORS if choice == "auto" else (BY_NAME[choice],)
    found = [_inspect(ctx, op, window) for op in candidates]
    ctx.evidence("detected-operators.txt", "\n".join(f.describe() for f in found) + "\n")
    for f in found:
        ctx.log(f.describe())
    if choice == "auto":
        testable = [f for f in found if f.installed and f.operator.valid is not None]
        if not testable:
            others = [f.operator.title for f in found if f.installed]
            ctx.fail(
                "no AI operator that kaic can test is installed (looked for "
                f"{', '.join(o.title for o in OPERATORS if o.valid)})"
                + (
                    f"; installed without an automated procedure: {', '.join(others)} "
                    "(prove these by hand)"
                    if others
                    else ""
                )
            )
        chosen = next((f for f in testable if f.running), testable[0])
    else:
        chosen = found[0]
        if not chosen.installed:
            ctx.fail(f"--operator {choice}: {chosen.describe()}")
        if chosen.operator.valid is None:
            ctx.error(
                f"kaic has no automated procedure for {chosen.operator.title}; choose "
                f"one of {', '.join(o.name for o in OPERATORS if o.valid)}"
            )
    op = chosen.operator
    ctx.log(f"testing {op.title} {chosen.version or '(version unknown)'}")
    ctx.evidence(
        "operator.json",
        dump(
            {
                "operator": op.name,
                "title": op.title,
                "version": chosen.version,
                "controller": chosen.controller.detail if chosen.controller else None,
            }
        ),
        "application/json",
    )
    waits = Waits()
    try:
        _pods_running(ctx, chosen)
        _crds_registered(ctx, op)
        _webhook_operational(ctx, chosen)
        _webhook_rejects(ctx, chosen)
        _reconciles(ctx, op, waits)
    finally:
        waits.save(ctx)


def _pods_running(ctx: CheckContext, found: Found) -> None:
    with ctx.subtest("OperatorPodsRunning") as t:
        ctl = found.controller
        assert ctl is not None
        if ctl.pods:
            ctx.evidence("controller-pods.json", dump(list(ctl.pods)), "application/json")
        t.log(ctl.detail)
        t.require(ctl.ready, ctl.detail)


def _crds_registered(ctx: CheckContext, op: Operator) -> None:
    with ctx.subtest("CRDRegistered") as t:
        problems = []
        for name in op.crds:
            crd = ctx.cluster.get(CRD_API, "CustomResourceDefinition", name)
            if crd is None:
                problems.append(f"{name} missing")
            elif not has_condition(crd, "Established"):
                c = condition(crd, "Established") or {}
                problems.append(f"{name} not Established ({c.get('message', 'no condition')})")
            else:
                versions = [
                    v["name"] for v in crd.get("spec", {}).get("versions") or [] if v.get("served")
                ]
                t.log(f"{name} Established (served: {', '.join(versions)})")
        if problems:
            t.fail("; ".join(problems))


def _webhook_operational(ctx: CheckContext, found: Found) -> None:
    with ctx.subtest("WebhookOperational") as t:
        hooks = found.webhooks
        summary = [
            {
                "configuration": f"{kind}/{cfg}",
                "webhook": wh.get("name"),
                "rules": wh.get("rules"),
                "failurePolicy": wh.get("failurePolicy"),
                "clientConfig": {
                    k: (f"{len(v)} bytes" if k == "caBundle" else v)
                    for k, v in (wh.get("clientConfig") or {}).items()
                },
            }
            for kind, cfg, wh in hooks
        ]
        ctx.evidence("webhooks.json", dump(summary), "application/json")
        validating = [h for h in hooks if h[0] == "ValidatingWebhookConfiguration"]
        t.require(
            bool(validating),
            f"no ValidatingWebhookConfiguration has a webhook for {found.operator.group}",
        )
        bad = []
        for _kind, cfg, wh in hooks:
            cc = wh.get("clientConfig") or {}
            if not wh.get("rules"):
                bad.append(f"{cfg}/{wh.get('name')}: no rules")
            if not cc.get("caBundle"):
                bad.append(f"{cfg}/{wh.get('name')}: no caBundle")
            if not (cc.get("service") or cc.get("url")):
                bad.append(f"{cfg}/{wh.get('name')}: no service or url")
        if bad:
            t.fail("; ".join(bad))
        t.log(
            f"{len(hooks)} webhooks for {found.operator.group} with rules and caBundle "
            f"in {', '.join(sorted({c for _, c, _ in hooks}))}"
        )


def _webhook_rejects(ctx: CheckContext, found: Found) -> None:
    with ctx.subtest("WebhookRejectsInvalidCR") as t:
        op = found.operator
        assert op.invalid is not None
        obj = op.invalid(ctx, ctx.namespace)
        ctx.evidence("invalid-cr.json", dump(obj), "application/json")
        admission, created = try_create(ctx.cluster, obj, dry_run=True)
        if admission.verdict == "rejected" and "dry run" in admission.message.lower():
            t.log("a webhook does not support dry-run; creating for real")
            admission, created = try_create(ctx.cluster, obj, dry_run=False)
            if created is not None:
                _delete_quietly(ctx, created)
        t.log(
            f"server-side dry-run create of invalid {obj['kind']}: {admission.verdict}"
            + (f": {admission.message}" if admission.message else "")
        )
        names = {wh.get("name") for _, _, wh in found.webhooks}
        if admission.verdict == "accepted":
            t.fail(f"an invalid {obj['kind']} was accepted: no webhook of {op.title} denied it")
        if admission.verdict == "unreachable":
            t.fail(
                f"the API server could not call the webhook {admission.webhook}: "
                f"{admission.message}"
            )
        if admission.verdict == "rejected":
            t.error(
                f"the invalid {obj['kind']} was refused before reaching a webhook "
                f"(schema or policy): {admission.message}"
            )
        t.require(
            admission.webhook in names,
            f"denied by webhook {admission.webhook}, which "
            f"is not one of {op.title}'s ({', '.join(sorted(n for n in names if n))})",
        )
        t.log(f"denied by {op.title}'s webhook {admission.webhook}")


def _reconciles(ctx: CheckContext, op: Operator, waits: Waits) -> None:
    with ctx.subtest("ControllerReconcilesCR") as t:
        assert op.valid is not None
        steps = op.valid(ctx, ctx.namespace)
        created: list[KubeObject] = []
        timeout = ctx.float_option("operator-reconcile-timeout")
        try:
            for step in steps:
                obj = step.obj
                exists = any(
                    name_of(c) == name_of(obj) and c["kind"] == obj["kind"] for c in created
                )
                if not exists:
                    admission, made = try_create(ctx.cluster, obj, dry_run=False)
                    if made is None:
                        if admission.verdict in ("unreachable", "denied"):
                            t.fail(
                                f"a valid {obj['kind']} could not be created "
                                f"({admission.verdict} by webhook {admission.webhook}): "
                                f"{admission.message}"
                            )
                        t.error(f"creating {obj['kind']} {name_of(obj)}: {admission.message}")
                    created.append(made)
                if step.done is None:
                    continue
                ns = obj.get("metadata", {}).get("namespace")
                budget = ctx.budget(timeout)
                try:
                    final = waits.timed(
                        step.promise,
                        budget,
                        partial(
                            ctx.cluster.wait_for,
                            obj["apiVersion"],
                            obj["kind"],
                            name_of(obj),
                            ns,
                            step.done,
                            timeout=budget,
                            what=step.promise,
                        ),
                    )
                except WaitTimeoutError:
                    now = ctx.cluster.get(obj["apiVersion"], obj["kind"], name_of(obj), ns)
                    t.fail(
                        f"not reconciled within {budget:.0f}s: {step.promise}; status now "
                        f"{dump((now or {}).get('status', {}))}"
                    )
                t.log(f"reconciled: {step.promise}")
                ctx.evidence(
                    f"reconciled-{len(waits.entries)}-{obj['kind'].lower()}.json",
                    dump(final),
                    "application/json",
                )
        finally:
            order = {kind: i for i, kind in enumerate(op.delete_order)}
            for obj in sorted(reversed(created), key=lambda o: order.get(o["kind"], -1)):
                _delete_quietly(ctx, obj)


def _delete_quietly(ctx: CheckContext, obj: KubeObject) -> None:
    try:
        ctx.cluster.delete(
            obj["apiVersion"],
            obj["kind"],
            name_of(obj),
            obj.get("metadata", {}).get("namespace"),
            wait_timeout=30,
        )
    except ClusterError as e:
        ctx.log(f"could not delete {obj['kind']} {name_of(obj)}: {e}")


__all__ = ["OPERATORS", "Operator", "robust_controller"]
