"""The lab package's layout and start order: a component name maps to one module, start
dependencies only point backwards, independent components start side by side."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from kaic.errors import LabError, UsageError
from kaic.lab import Component, Lab, LabOptions, all_components
from kaic.lab.apiserver import ApiClient
from kaic.lab.component import select
from kaic.lab.context import LabContext
from kaic.lab.controller import GoController
from kaic.lab.sims import http

COMPONENTS = Path(__file__).resolve().parents[2] / "src" / "kaic" / "lab" / "components"


def test_each_component_is_in_the_module_named_like_it() -> None:
    for c in all_components():
        module = type(c).__module__
        assert module == f"kaic.lab.components.{c.name.replace('-', '_')}", c.name
    public = {p.stem for p in COMPONENTS.glob("*.py") if not p.stem.startswith("_")}
    assert public == {c.name.replace("-", "_") for c in all_components()}


def test_a_component_waits_only_for_components_that_start_before_it() -> None:
    comps = {c.name: c for c in all_components()}
    for c in comps.values():
        for other in c.after or ():
            assert other in comps, f"{c.name} waits for unknown {other}"
            assert comps[other].order < c.order, f"{c.name} waits for later {other}"


def test_a_component_needs_only_components_that_exist() -> None:
    comps = {c.name: c for c in all_components()}
    for c in comps.values():
        for other in c.needs:
            assert other in comps, f"{c.name} needs unknown {other}"


def test_a_lab_with_prometheus_adapter_but_no_prometheus_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="needs prometheus: --with prometheus,prometheus-adapter"):
        select(frozenset(), frozenset({"prometheus-adapter"}))
    chosen = select(frozenset(), frozenset({"prometheus", "prometheus-adapter"}))
    assert {"prometheus", "prometheus-adapter", "httpd"} <= {c.name for c in chosen}


def test_crd_sets_and_simulators_do_not_wait_for_the_whole_control_plane(tmp_path: Path) -> None:
    deps = Lab(LabOptions(name="unit", state_dir=tmp_path)).dependencies()
    assert deps["gateway-api"] == {"kube-apiserver"}
    assert deps["kwok"] == {"kube-apiserver"}
    assert deps["nodes"] == {"kwok", "dra-api"}
    # no `after`: every component of a lower order, as before
    assert deps["kube-controller-manager"] == {
        "etcd",
        "network",
        "kube-apiserver",
        "dra-api",
        "admission-policy",
    }
    assert deps["network"] == set()
    assert deps["kube-proxy"] == {"nodes", "network"}


def test_the_controllers_are_go_controllers_of_described_programs() -> None:
    comps = {c.name: c for c in all_components()}
    kueue, karpenter = comps["kueue-controller"], comps["node-autoscaler"]
    assert isinstance(kueue, GoController) and isinstance(karpenter, GoController)
    assert (kueue.program, kueue.webhooks, kueue.lease) == (
        "kueue",
        "webhooks",
        "c1f6bfd2.kueue.x-k8s.io",
    )
    assert set(kueue.port_keys()) == {"kueue-health", "kueue-metrics", "kueue-webhook"}
    assert (karpenter.program, karpenter.crds, karpenter.lease) == ("karpenter", "crds", "")
    assert set(karpenter.port_keys()) == {"karpenter-health", "karpenter-metrics"}


class _Step(Component):
    log: ClassVar[list[tuple[str, str]]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()
    fail: ClassVar[str] = ""

    def start(self, ctx: LabContext) -> None:
        with self.lock:
            self.log.append(("start", self.name))
        time.sleep(0.05)
        if self.name == self.fail:
            raise LabError(f"{self.name} broke")
        with self.lock:
            self.log.append(("ready", self.name))


def _step(name: str, order: int, after: tuple[str, ...] | None = None) -> Component:
    cls = type(name, (_Step,), {"name": name, "order": order, "after": after})
    return cls()


def _lab(tmp_path: Path, *comps: Component) -> Lab:
    lab = Lab(LabOptions(name="unit", state_dir=tmp_path))
    lab._components = list(comps)
    return lab


def test_components_start_when_what_they_wait_for_is_ready(tmp_path: Path) -> None:
    _Step.log, _Step.fail = [], ""
    lab = _lab(
        tmp_path, _step("a", 10), _step("b", 20), _step("c", 30, after=("a",)), _step("d", 40)
    )
    lab._start_all(lambda _m: None)
    pos = {e: i for i, e in enumerate(_Step.log)}
    assert pos[("start", "b")] > pos[("ready", "a")]
    assert pos[("start", "c")] < pos[("ready", "b")]  # beside b, not after it
    assert pos[("start", "d")] > max(pos[("ready", n)] for n in "abc")


def test_a_failed_start_stops_the_lab_from_starting_more(tmp_path: Path) -> None:
    _Step.log, _Step.fail = [], "b"
    lab = _lab(tmp_path, _step("a", 10), _step("b", 20), _step("c", 30))
    with pytest.raises(LabError, match="b broke"):
        lab._start_all(lambda _m: None)
    assert ("start", "c") not in _Step.log


def test_the_api_client_dials_only_loopback() -> None:
    import ssl

    with pytest.raises(LabError, match="loopback"):
        ApiClient("https://10.0.0.1:6443", ssl.create_default_context())
    assert ApiClient("https://127.0.0.1:6443/", ssl.create_default_context()).server == (
        "https://127.0.0.1:6443"
    )


def test_the_simulators_http_helper_answers_and_listens_on_loopback_only() -> None:
    import urllib.request

    with pytest.raises(SystemExit, match="non-loopback"):
        http.server("0.0.0.0", 0, lambda _r: http.Reply(200, b""))
    srv = http.start(
        http.server("127.0.0.1", 0, lambda r: http.Reply(200, f"{r.path} {r.query}".encode()))
    )
    try:
        port = srv.server_address[1]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/x?a=1", timeout=5) as r:
            assert r.read() == b"/x {'a': ['1']}"
    finally:
        srv.shutdown()


def test_the_package_exports_resolve_when_first_used() -> None:
    import kaic.lab

    assert sorted(kaic.lab.__all__) == sorted(kaic.lab._EXPORTS)
    for name in kaic.lab.__all__:
        assert getattr(kaic.lab, name).__name__ == name
    with pytest.raises(AttributeError):
        _ = kaic.lab.NoSuchThing  # type: ignore[attr-defined]


def test_leaving_out_a_required_component_leaves_out_what_requires_it() -> None:
    from kaic.errors import UsageError
    from kaic.lab.component import select

    default = {c.name for c in select(frozenset(), frozenset())}
    assert "jobset-controller" in default
    names = {c.name for c in select(frozenset({"jobset"}), frozenset())}
    assert "jobset" not in names and "jobset-controller" not in names
    with pytest.raises(UsageError, match="lab component jobset-controller needs jobset"):
        select(frozenset({"jobset"}), frozenset({"jobset-controller"}))


def test_a_lab_naming_a_component_this_kaic_lacks_still_goes_down(tmp_path: Path) -> None:
    """A lab made by another kaic version: ``down`` stops it (pid files), ``up`` refuses."""
    import json
    import subprocess
    import sys

    state = tmp_path / "old"
    (state / "run").mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    exe = sys.executable  # argv[0], as the lab records it
    (state / "run" / "gone-component.pid").write_text(f"{sleeper.pid}\n{exe}")
    opts = LabOptions(name="old", state_dir=state)
    Lab.state_file(state).write_text(
        json.dumps({"options": opts.to_json(), "ports": {}, "components": ["gone-component"]})
    )
    lab = Lab.load("old", state)
    with pytest.raises(LabError, match=r"uses component\(s\) this kaic lacks: gone-component"):
        lab.up()
    lab.down()
    assert sleeper.wait(timeout=10) is not None
    assert not state.exists()
