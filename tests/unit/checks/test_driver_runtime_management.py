"""driver_runtime_management against a fake cluster with a simulated scheduler and driver.

The fake binds probe pods to the node their affinity names, allocates their DRA claims
from the ResourceSlices (or counts ``nvidia.com/gpu``), and answers ``exec`` by running
the check's real probe script under ``sh`` with the lab's stand-in ``nvidia-smi`` for
the node's installed driver (``kaic.lab.sims.devices``), so the script itself is tested.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kaic import catalog
from kaic.catalog import Catalog
from kaic.checks import driver_runtime_management as drm
from kaic.checks import load_builtin_checks
from kaic.checks.accelerators import allocated_devices, dra_pools
from kaic.cluster.api import ExecResult
from kaic.errors import ExitCode
from kaic.lab.sims import devices
from kaic.model import CheckResult, Level, Outcome
from kaic.runner import RunRequest, execute, exit_code, make_plan
from tests.fakes import FakeCluster, run_fake_check

DRA = "resource.k8s.io/v1"
NVIDIA = drm.ACCELERATORS["nvidia"]
GFD = {
    "nvidia.com/cuda.driver-version.full": "580.82.07",
    "nvidia.com/cuda.runtime-version.full": "13.0",
}


def node_slice(name: str, driver: str, node: str, devs: list[dict[str, Any]]) -> dict[str, Any]:
    """A one-slice pool of ``driver`` on ``node`` with ``devs``."""
    return {
        "apiVersion": DRA,
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devs,
        },
    }


def gpu_device(i: int, node: str, driver: str | None, cuda: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "type": {"string": "gpu"},
        "index": {"int": i},
        "minor": {"int": i},
        "uuid": {"string": devices.synthetic_uuid("t", node, i)},
    }
    if driver:
        attrs["driverVersion"] = {"version": driver}
    if cuda:
        attrs["cudaDriverVersion"] = {"version": cuda}
    return {"name": f"gpu-{i}", "attributes": attrs}


class Sim:
    """Accelerator nodes that publish versions, and the driver each really has."""

    def __init__(
        self,
        *,
        dra: bool = True,
        device_plugin: bool = False,
        nodes: int = 2,
        gpus: int = 2,
        published: str | None = "580.82.7",
        cuda: str | None = "13.0.0",
        labels: dict[str, str] | None = None,
        runtime: str = "containerd://2.1.4",
    ) -> None:
        self.fc = FakeCluster()
        self.installed: dict[str, devices.Driver] = {}
        self.inject = True
        """Whether the runtime injects nvidia-smi into granted containers."""
        self.execs: list[tuple[str, str | None]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="kaic-drm-"))
        if dra:
            self.fc.serve(
                DRA,
                ("deviceclasses", "DeviceClass", False),
                ("resourceslices", "ResourceSlice", False),
                ("resourceclaims", "ResourceClaim", True),
                ("resourceclaimtemplates", "ResourceClaimTemplate", True),
            )
            self.fc.add(
                {"apiVersion": DRA, "kind": "DeviceClass", "metadata": {"name": "gpu.nvidia.com"}}
            )
        for i in range(nodes):
            name = f"gpu-{i}"
            cap = {"cpu": "8"} | ({"nvidia.com/gpu": str(gpus)} if device_plugin else {})
            self.fc.add(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": dict(labels or {})},
                    "status": {
                        "capacity": cap,
                        "allocatable": cap,
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "nodeInfo": {"containerRuntimeVersion": runtime},
                    },
                }
            )
            self.installed[name] = devices.Driver("580.82.07", "13.0")
            if dra:
                devs = [gpu_device(j, name, published, cuda) for j in range(gpus)]
                self.fc.add(node_slice(f"{name}-slice", "gpu.nvidia.com", name, devs))
        self.fc.add(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "cpu-0"},
                "status": {"allocatable": {"cpu": "8"}, "nodeInfo": {}},
            }
        )
        self.fc.controllers.append(self.schedule)
        self.fc.exec_handler = self.exec

    def schedule(self, fc: FakeCluster) -> None:
        for pod in fc.list("v1", "Pod"):
            if pod["spec"].get("nodeName"):
                continue
            md = pod["metadata"]
            terms = pod["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]["nodeSelectorTerms"]
            node = terms[0]["matchFields"][0]["values"][0]
            statuses = []
            for rc in pod["spec"].get("resourceClaims") or []:
                cname = f"{md['name']}-{rc['name']}"
                tpl = fc.get(
                    DRA, "ResourceClaimTemplate", rc["resourceClaimTemplateName"], md["namespace"]
                )
                assert tpl is not None
                taken = allocated_devices(fc.list(DRA, "ResourceClaim"))
                pools = dra_pools(fc.list(DRA, "ResourceSlice"), NVIDIA, fc.list("v1", "Node"))
                free = [
                    d for p in pools for d in p.devices if node in d.nodes and d.key not in taken
                ]
                assert free, "no free device"
                fc.add(
                    {
                        "apiVersion": DRA,
                        "kind": "ResourceClaim",
                        "metadata": {"name": cname, "namespace": md["namespace"]},
                        "spec": copy.deepcopy(tpl["spec"]["spec"]),
                        "status": {
                            "allocation": {
                                "devices": {
                                    "results": [
                                        {
                                            "request": "single-accelerator",
                                            "driver": free[0].driver,
                                            "pool": free[0].pool,
                                            "device": free[0].name,
                                        }
                                    ]
                                }
                            }
                        },
                    }
                )
                statuses.append({"name": rc["name"], "resourceClaimName": cname})
            fc.patch(
                "v1",
                "Pod",
                md["name"],
                {
                    "spec": {"nodeName": node},
                    "status": {"phase": "Running", "resourceClaimStatuses": statuses},
                },
                md["namespace"],
            )

    def exec(self, ns: str, pod: str, command: Sequence[str], container: str | None) -> ExecResult:
        assert list(command[:2]) == ["sh", "-c"]
        self.execs.append((pod, container))
        obj = self.fc.get("v1", "Pod", pod, ns)
        assert obj is not None
        node = obj["spec"]["nodeName"]
        # NOTE: the real script, with one device node and the lab's nvidia-smi stand-in.
        d = self.tmp / pod
        (d / "bin").mkdir(parents=True, exist_ok=True)
        (d / "nvidia0").write_text("")
        if self.inject:
            smi = d / "bin" / "nvidia-smi"
            smi.write_text(
                devices.nvidia_smi_script([devices.Gpu(node, 0, "GPU-x")], self.installed[node])
            )
            smi.chmod(0o755)
        script = command[2].replace(NVIDIA.device_glob, f"{d}/nvidia[0-9]*")
        r = subprocess.run(
            ["sh", "-c", script],
            capture_output=True,
            text=True,
            env={"PATH": f"{d / 'bin'}:{os.defpath}"},
            timeout=30,
        )
        return ExecResult(r.stdout, r.stderr, r.returncode)

    def run(self, **options: str) -> CheckResult:
        return run_fake_check(
            self.fc, "driver_runtime_management", options=options, catalog_version="1.37"
        )


def sub(result: CheckResult, name: str) -> Any:
    return next(s for s in result.subresults if s.name == name)


def test_driver_runtime_management_passes_when_dra_attributes_match_the_installed_driver() -> None:
    sim = Sim()
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    assert [s.name for s in r.subresults] == [
        "VerifiableMechanismExposed",
        "DriverAndRuntimeCompatibility",
    ]
    assert sorted(p for p, _ in sim.execs) == ["driver-runtime-gpu-0", "driver-runtime-gpu-1"]
    assert any("via dra" in line for line in sub(r, "VerifiableMechanismExposed").log)
    claims = sim.fc.list(DRA, "ResourceClaim")
    assert len(claims) == 2
    names = {e.name for e in r.evidence}
    assert {"nodes.txt", "probe-commands.log", "pods.yaml"} <= names


def test_driver_runtime_management_reads_each_drivers_slices_once_and_no_nic_slice() -> None:
    sim = Sim()
    nic = {"name": "nic-0", "attributes": {}}
    sim.fc.add(node_slice("gpu-0-nics", "dra.net", "gpu-0", [nic]))
    reads: list[str | None] = []
    seen: list[str] = []
    iterate = sim.fc.iterate

    def counting(api_version: str, kind: str, *args: Any, **kw: Any) -> Any:
        for obj in iterate(api_version, kind, *args, **kw):
            if kind == "ResourceSlice":
                seen.append(obj["metadata"]["name"])
            yield obj
        if kind == "ResourceSlice":
            reads.append(kw.get("field_selector"))

    sim.fc.iterate = counting  # type: ignore[method-assign]
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    # one read per accelerator driver, each filtered by the apiserver; no slice twice
    assert len(reads) == len(set(reads)) and "spec.driver=gpu.nvidia.com" in reads
    assert all(f and f.startswith("spec.driver=") for f in reads)
    assert sorted(seen) == ["gpu-0-slice", "gpu-1-slice"]


@pytest.mark.parametrize(
    ("dra", "device_plugin", "lists_pods"), [(True, True, False), (False, True, True)]
)
def test_driver_runtime_management_lists_the_clusters_pods_only_for_device_plugin_probes(
    dra: bool, device_plugin: bool, lists_pods: bool
) -> None:
    sim = Sim(dra=dra, device_plugin=device_plugin, labels=GFD)
    kinds: list[str] = []
    iterate = sim.fc.iterate

    def counting(api_version: str, kind: str, *args: Any, **kw: Any) -> Any:
        kinds.append(kind)
        yield from iterate(api_version, kind, *args, **kw)

    sim.fc.iterate = counting  # type: ignore[method-assign]
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    # every node has a free DRA device: what pods request of nvidia.com/gpu is not needed
    assert ("Pod" in kinds) is lists_pods


def test_driver_runtime_management_passes_on_node_labels_in_device_plugin_mode() -> None:
    sim = Sim(dra=False, device_plugin=True, labels=GFD)
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason
    assert any("via node-labels" in line for line in sub(r, "VerifiableMechanismExposed").log)
    pods = [o for o in sim.fc.calls if o[0] == "create"]
    assert pods


def test_driver_runtime_management_reads_split_gfd_labels() -> None:
    labels = {
        "nvidia.com/cuda.driver.major": "580",
        "nvidia.com/cuda.driver.minor": "82",
        "nvidia.com/cuda.driver.rev": "07",
    }
    sim = Sim(dra=False, device_plugin=True, labels=labels)
    r = sim.run()
    assert r.outcome is Outcome.PASS, r.reason


def test_driver_runtime_management_fails_naming_the_node_whose_driver_disagrees() -> None:
    sim = Sim()
    sim.installed["gpu-1"] = devices.Driver("570.195.03", "12.8")
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    s = sub(r, "DriverAndRuntimeCompatibility")
    assert s.outcome is Outcome.FAIL
    assert "node gpu-1" in s.reason and "570.195.03" in s.reason and "580.82.7" in s.reason
    assert "gpu-0" not in s.reason


def test_driver_runtime_management_fails_when_the_runtime_version_disagrees() -> None:
    sim = Sim()
    sim.installed["gpu-0"] = devices.Driver("580.82.07", "12.9")
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    assert "runtime version 13.0.0" in sub(r, "DriverAndRuntimeCompatibility").reason


def test_driver_runtime_management_fails_when_nothing_is_published() -> None:
    sim = Sim(published=None, cuda=None)
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    s = sub(r, "VerifiableMechanismExposed")
    assert "node gpu-0 publishes no driver version" in s.reason
    assert "node gpu-1 publishes no driver version" in s.reason
    # NOTE: the probe still runs: what is installed is evidence even when nothing says so.
    compat = sub(r, "DriverAndRuntimeCompatibility")
    assert compat.outcome is Outcome.PASS
    assert any("published driver (none)" in x for x in compat.log)


def test_driver_runtime_management_fails_when_devices_of_one_node_disagree() -> None:
    sim = Sim()
    sl = sim.fc.get(DRA, "ResourceSlice", "gpu-0-slice")
    assert sl is not None
    sl["spec"]["devices"][1]["attributes"]["driverVersion"] = {"version": "570.1.0"}
    sim.fc.add(sl)
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    assert "different driver versions" in sub(r, "VerifiableMechanismExposed").reason


def test_driver_runtime_management_fails_when_the_runtime_injects_no_tools() -> None:
    sim = Sim()
    sim.inject = False
    r = sim.run()
    assert r.outcome is Outcome.FAIL
    assert "RUNTIME_CONFIG_OK=false" in sub(r, "DriverAndRuntimeCompatibility").reason


def test_driver_runtime_management_fails_without_a_container_runtime() -> None:
    r = Sim(runtime="").run()
    assert r.outcome is Outcome.FAIL
    assert "reports no container runtime" in sub(r, "VerifiableMechanismExposed").reason


def test_driver_runtime_management_warns_on_a_non_cri_runtime_string() -> None:
    r = Sim(runtime="kwok-v9.9.9").run()
    assert r.outcome is Outcome.PASS, r.reason
    assert any("not in the CRI form" in x for x in sub(r, "VerifiableMechanismExposed").log)


def test_driver_runtime_management_errors_when_no_accelerator_is_free() -> None:
    sim = Sim(dra=False, device_plugin=True, labels=GFD, nodes=1, gpus=1)
    sim.fc.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hog", "namespace": "other"},
            "spec": {
                "nodeName": "gpu-0",
                "containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}],
            },
            "status": {"phase": "Running"},
        }
    )
    r = sim.run()
    assert r.outcome is Outcome.ERROR
    assert "gpu-0" in sub(r, "DriverAndRuntimeCompatibility").reason


def test_driver_runtime_management_reports_an_unknown_accelerator_type_as_skip() -> None:
    r = Sim().run(**{"accelerator-type": "amd"})
    assert r.outcome is Outcome.SKIP
    assert r.reason.startswith("UNKNOWN:")
    assert drm.UNKNOWN_LINE in r.log


def test_driver_runtime_management_reports_nodes_of_other_vendors_as_unknown() -> None:
    fc = FakeCluster()
    fc.add(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "mi300"},
            "status": {"allocatable": {"amd.com/gpu": "8"}},
        }
    )
    r = run_fake_check(fc, "driver_runtime_management", catalog_version="1.37")
    assert r.outcome is Outcome.SKIP and "UNKNOWN" in r.reason and "mi300" in r.reason


def test_driver_runtime_management_is_not_applicable_without_accelerators() -> None:
    fc = FakeCluster()
    fc.add({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cpu"}, "status": {}})
    r = run_fake_check(fc, "driver_runtime_management", catalog_version="1.37")
    assert r.outcome is Outcome.SKIP and r.not_applicable
    assert "no node has accelerators" in r.reason


def test_driver_runtime_management_limits_itself_to_the_selected_nodes() -> None:
    sim = Sim(labels={"pool": "a"})
    node = sim.fc.get("v1", "Node", "gpu-1")
    assert node is not None
    node["metadata"]["labels"] = {"pool": "b"}
    sim.fc.add(node)
    r = sim.run(**{"driver-runtime-nodes": "pool=a"})
    assert r.outcome is Outcome.PASS, r.reason
    assert [p for p, _ in sim.execs] == ["driver-runtime-gpu-0"]


def test_driver_runtime_management_rejects_a_bad_allocation_mode() -> None:
    r = Sim().run(**{"allocation-mode": "magic"})
    assert r.outcome is Outcome.ERROR and "--allocation-mode" in r.reason


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("580.82.7", "580.82.07", True),
        ("13.0.0", "13.0", True),
        ("v1.2.3-rc1", "1.2.3", True),
        ("580.82.7", "570.82.7", False),
        ("", "", False),
        ("abc", "ABC", True),
        ("abc", "1.0", False),
    ],
)
def test_versions_agree_at_their_shared_precision(a: str, b: str, same: bool) -> None:
    assert drm.versions_agree(a, b) is same


def test_parse_probe_needs_every_result_line() -> None:
    assert drm.parse_probe("RESULT: ACCELERATOR_COUNT=1\n") is None
    full = (
        "RESULT: ACCELERATOR_COUNT=1\nRESULT: RUNTIME_CONFIG_OK=true\n"
        "RESULT: DRIVER_FUNCTIONAL=true\nRESULT: ACTUAL_DRIVER_VERSION=580.82.07\n"
        "RESULT: ACTUAL_RUNTIME_VERSION=13.0\n"
    )
    res = drm.parse_probe(full)
    assert res == drm.ProbeResult(1, True, True, "580.82.07", "13.0")


def _catalog_with_driver_runtime_as(level: Level) -> Catalog:
    """Catalog 1.37 as a 1.38 would be: driver_runtime_management at ``level``."""
    base = catalog.load("1.37")
    reqs = tuple(
        dataclasses.replace(r, level=level) if r.id == "driver_runtime_management" else r
        for r in base.requirements
    )
    return dataclasses.replace(base, version="1.38", requirements=reqs, _by_id={})


@pytest.mark.parametrize(
    ("level", "code"), [(Level.MUST, ExitCode.NOT_MET), (Level.SHOULD, ExitCode.OK)]
)
def test_a_failing_driver_runtime_management_fails_the_run_once_it_is_a_must(
    level: Level, code: ExitCode
) -> None:
    sim = Sim()
    sim.installed["gpu-0"] = devices.Driver("570.195.03", "12.8")
    plan = make_plan(
        _catalog_with_driver_runtime_as(level),
        load_builtin_checks(),
        focus="^driver_runtime_management$",
    )
    record = execute(sim.fc, plan, run_id="r1", request=RunRequest())
    (entry,) = record.results
    assert entry.level is level and entry.result.outcome is Outcome.FAIL
    assert exit_code(record) is code
