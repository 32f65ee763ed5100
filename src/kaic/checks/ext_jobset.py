"""ext_jobset (extended profile, TestExtJobSet): groups of interdependent Jobs run as one
unit through the JobSet API, with a controller that runs them.

Owns: the JobSet used (two replicated Jobs, ``leader`` ×1 and ``workers`` ×2, each one
pod that exits 0), the procedure (API served, the controller creates the Jobs, the JobSet
completes with its pods created through those Jobs) and the evidence. Must not know how
the lab runs the controller.
"""

from __future__ import annotations

import time
from typing import Any

from kaic.checks.base import CheckContext, CheckOption, Permission, Resource, Subtest, check, shared
from kaic.checks.created import keep_with_events
from kaic.cluster.api import KubeList, KubeObject, condition, name_of
from kaic.errors import ClusterError, PermissionDeniedError, WaitTimeoutError

GROUP = "jobset.x-k8s.io"
API_VERSION = f"{GROUP}/v1alpha2"
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
NAME = "kaic-jobset"
REPLICATED = (("leader", 1), ("workers", 2))
"""The replicated Jobs of the test JobSet and their replica counts."""
IMAGE = "docker.io/library/busybox:1.37"

OPTIONS = (
    CheckOption("jobset-image", "image of the JobSet's pods (needs sh)", IMAGE),
    CheckOption(
        "jobset-controller-timeout",
        "seconds for a controller to create the JobSet's Jobs",
        "60",
    ),
    CheckOption("jobset-complete-timeout", "seconds for the JobSet to complete", "300"),
)


def jobset(namespace: str, image: str) -> KubeObject:
    """The test JobSet: every Job one pod that prints a line and exits 0."""

    def job(name: str, replicas: int) -> dict[str, Any]:
        return {
            "name": name,
            "replicas": replicas,
            "template": {
                "spec": {
                    "parallelism": 1,
                    "completions": 1,
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "terminationGracePeriodSeconds": 1,
                            "containers": [
                                {
                                    "name": "main",
                                    "image": image,
                                    "command": ["sh", "-c", f"echo {name} done"],
                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                }
                            ],
                        }
                    },
                }
            },
        }

    return {
        "apiVersion": API_VERSION,
        "kind": "JobSet",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {"replicatedJobs": [job(n, r) for n, r in REPLICATED]},
    }


def expected_jobs() -> set[str]:
    """Names the JobSet API gives the child Jobs: ``<jobset>-<replicatedJob>-<index>``."""
    return {f"{NAME}-{n}-{i}" for n, r in REPLICATED for i in range(r)}


def owned_by(obj: KubeObject, kind: str, name: str, uid: str | None = None) -> bool:
    """Whether ``obj``'s controller owner reference is ``kind``/``name`` (and ``uid``)."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("name") == name and ref.get("controller"):
            return uid is None or ref.get("uid") == uid
    return False


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.c = ctx.cluster
        self.ns = ctx.namespace
        self.uid: str | None = None
        self.jobs: KubeList = []

    def served(self, t: Subtest) -> None:
        kinds = {r.kind for r in self.c.api_resources(API_VERSION)}
        if "JobSet" not in kinds:
            others = [v for v in self.c.api_versions() if v.startswith(f"{GROUP}/")]
            t.fail(
                f"the API server does not serve JobSet in {API_VERSION}"
                + (f" (it serves {', '.join(others)})" if others else f" (no {GROUP} API)")
            )
        t.log(f"{API_VERSION} serves JobSet")

    def controller_acts(self, t: Subtest) -> None:
        image = self.ctx.option("jobset-image") or IMAGE
        try:
            created = self.c.create(jobset(self.ns, image))
        except PermissionDeniedError:
            raise
        except ClusterError as e:
            t.fail(f"the JobSet was not accepted: {e}")
        self.uid = created.get("metadata", {}).get("uid")
        timeout = self.ctx.budget(self.ctx.float_option("jobset-controller-timeout"))
        want = expected_jobs()

        def ours(jobs: KubeList) -> KubeList:
            return [j for j in jobs if owned_by(j, "JobSet", NAME, self.uid)]

        try:
            self.jobs = ours(
                self.c.wait_list(
                    "batch/v1",
                    "Job",
                    self.ns,
                    lambda jobs: {name_of(j) for j in ours(jobs)} >= want,
                    timeout=timeout,
                    what="the JobSet's Jobs",
                )
            )
        except WaitTimeoutError:
            found = ours(self.c.list("batch/v1", "Job", self.ns))
            if not found:
                t.fail(
                    f"no controller acted on the JobSet: no Job owned by it after {timeout:.0f}s"
                    " (is a JobSet controller installed and running?)"
                )
            t.fail(
                f"the JobSet controller created {len(found)} of {len(want)} Jobs in"
                f" {timeout:.0f}s: missing {', '.join(sorted(want - {name_of(j) for j in found}))}"
            )
        t.log(f"the JobSet controller created Jobs {', '.join(sorted(want))}")

    def completes(self, t: Subtest) -> None:
        timeout = self.ctx.budget(self.ctx.float_option("jobset-complete-timeout"))
        start = time.monotonic()

        def terminal(obj: KubeObject | None) -> bool:
            return obj is not None and any(
                (condition(obj, c) or {}).get("status") == "True" for c in ("Completed", "Failed")
            )

        try:
            js = self.c.wait_for(
                API_VERSION, "JobSet", NAME, self.ns, terminal, timeout=timeout, what="the JobSet"
            )
        except WaitTimeoutError:
            js = self.c.get(API_VERSION, "JobSet", NAME, self.ns)
            state = (js or {}).get("status", {}).get("replicatedJobsStatus")
            t.fail(f"the JobSet did not complete within {timeout:.0f}s (status: {state})")
        assert js is not None
        failed = condition(js, "Failed") or {}
        if failed.get("status") == "True":
            t.fail(f"the JobSet failed: {failed.get('reason')}: {failed.get('message')}")
        pods = self.c.list("v1", "Pod", self.ns, label_selector=f"{JOBSET_LABEL}={NAME}")
        jobs = {name_of(j): j.get("metadata", {}).get("uid") for j in self.jobs}
        orphans = [
            name_of(p)
            for p in pods
            if not any(owned_by(p, "Job", jn, uid) for jn, uid in jobs.items())
        ]
        if orphans:
            t.fail(f"pods of the JobSet not created by its Jobs: {', '.join(orphans)}")
        succeeded = [p for p in pods if p.get("status", {}).get("phase") == "Succeeded"]
        if len(succeeded) < len(jobs):
            t.fail(
                f"the JobSet reports Completed but only {len(succeeded)} of its {len(jobs)}"
                " pods succeeded"
            )
        t.log(
            f"the JobSet completed in {time.monotonic() - start:.1f}s; {len(succeeded)} pods"
            f" succeeded, each created by one of its Jobs"
        )

    def keep_evidence(self) -> None:
        try:
            objs: list[Any] = []
            js = self.c.get(API_VERSION, "JobSet", NAME, self.ns)
            if js is not None:
                objs.append(js)
            objs += self.c.list("batch/v1", "Job", self.ns)
            objs += self.c.list("v1", "Pod", self.ns)
            keep_with_events(self.ctx, objs)
        except ClusterError as e:
            self.ctx.log(f"could not keep the JobSet's objects as evidence: {e}")


@check(
    "ext_jobset",
    test="TestExtJobSet",
    locks=shared(Resource.NODE_CAPACITY),
    options=OPTIONS,
    permissions=(
        Permission("create", "jobsets", GROUP),
        Permission("get", "jobsets", GROUP),
        Permission("list", "jobs", "batch"),
        Permission("list", "pods"),
        Permission("list", "events"),
    ),
    timeout_s=420.0,
)
def ext_jobset(ctx: CheckContext) -> None:
    """A JobSet of two replicated Jobs runs to completion, its Jobs and pods created by a
    JobSet controller."""
    run = _Run(ctx)
    try:
        ctx.step("APIServed", run.served)
        ctx.step("ControllerCreatesJobs", run.controller_acts, needs=("APIServed",))
        ctx.step("JobSetCompletes", run.completes, needs=("ControllerCreatesJobs",))
    finally:
        if ctx.passed("APIServed"):
            run.keep_evidence()
