"""The lab network's address plan and block allocation (no kernel objects: the registry
is a temporary directory and no block's kernel objects exist)."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest
import yaml

from kaic.lab import network
from kaic.lab.components.kwok import node_addresses_always
from kaic.lab.network import BLOCKS, LAB_RANGE, LabNet, Layout


@pytest.fixture(autouse=True)
def _no_host_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "host_routes_in_range", lambda: [])
    monkeypatch.setattr(network, "remove", lambda _net: None)


def _lab(tmp_path: Path, name: str) -> Path:
    state = tmp_path / "labs" / name
    state.mkdir(parents=True)
    (state / "state.json").write_text("{}")
    return state


def test_every_block_is_inside_198_18_0_0_15_and_blocks_never_overlap() -> None:
    nets = [Layout(b).network for b in range(BLOCKS)]
    assert all(n.subnet_of(LAB_RANGE) for n in nets)
    assert len({n.network_address for n in nets}) == BLOCKS == 32
    for a, b in itertools.pairwise(nets):
        assert not a.overlaps(b)


def test_a_block_holds_disjoint_pod_service_and_link_ranges() -> None:
    lay = Layout(3)
    parts = [lay.pod_cidr, lay.service_cidr, lay.link, lay.gateway_cidr]
    assert all(p.subnet_of(lay.network) for p in parts)
    assert not any(a.overlaps(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    assert lay.host_addr in lay.link and lay.ns_addr in lay.link and lay.host_addr != lay.ns_addr
    assert str(lay.pod_cidr) == "198.18.48.0/21" and str(lay.service_cidr) == "198.18.56.0/22"
    assert lay.gateway_ip in lay.gateway_cidr
    with pytest.raises(ValueError):
        Layout(BLOCKS)


def test_names_carry_the_lab_name_and_fit_the_kernel_limits() -> None:
    net = LabNet("pytest-123456", "/root/.cache/kaic/lab/pytest-123456", Layout(0))
    assert net.netns.startswith("kaic-pytest-123456-")
    assert len(net.host_if) <= 15 and net.host_if.startswith("kaic")
    assert "pytest-123456" in net.alias
    other = LabNet("pytest-123456", "/work/other-cache/lab/pytest-123456", Layout(0))
    assert other.netns != net.netns and other.host_if != net.host_if
    assert net.in_netns(["kube-proxy", "--v=1"])[:4] == ["ip", "netns", "exec", net.netns]


def test_two_labs_get_different_blocks_and_one_lab_keeps_its_own(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    a = network.allocate("a", _lab(tmp_path, "a"), root=reg)
    b = network.allocate("b", _lab(tmp_path, "b"), root=reg)
    assert a.layout.block != b.layout.block
    assert not a.layout.network.overlaps(b.layout.network)
    assert network.allocate("a", tmp_path / "labs" / "a", root=reg) == a
    network.release(a, root=reg)
    c = network.allocate("c", _lab(tmp_path, "c"), root=reg)
    assert c.layout.block == a.layout.block


def test_a_block_whose_lab_state_is_gone_is_handed_out_again(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    state = _lab(tmp_path, "gone")
    old = network.allocate("gone", state, root=reg)
    (state / "state.json").unlink()
    new = network.allocate("new", _lab(tmp_path, "new"), root=reg)
    assert new.layout.block == old.layout.block and new.lab == "new"


def test_a_crashed_lab_keeps_its_block_until_it_is_taken_down(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    crashed = network.allocate("crashed", _lab(tmp_path, "crashed"), root=reg)
    other = network.allocate("other", _lab(tmp_path, "other"), root=reg)
    assert other.layout.block != crashed.layout.block


def test_blocks_with_someone_elses_route_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        network, "host_routes_in_range", lambda: [ipaddress.IPv4Network("198.18.0.0/24")]
    )
    net = network.allocate("a", _lab(tmp_path, "a"), root=tmp_path / "registry")
    assert net.layout.block == 1


def test_no_free_block_is_a_lab_error(tmp_path: Path) -> None:
    from kaic.errors import LabError

    reg = tmp_path / "registry"
    for i in range(BLOCKS):
        network.allocate(f"l{i}", _lab(tmp_path, f"l{i}"), root=reg)
    with pytest.raises(LabError, match="no free lab network block"):
        network.allocate("one-more", _lab(tmp_path, "one-more"), root=reg)


UPSTREAM_SHAPE = """conditions: []
{{ $hasInternalIP := false }}
{{ $hasHostname := false }}
{{ if or (not $hasInternalIP) (not $hasHostname) }}
addresses:
{{ end }}
{{ if not $hasHostname }}
- address: {{ NodeName | Quote }}
  type: Hostname
{{ end }}

{{ with NodePort }}
daemonEndpoints: {}
{{ end }}
"""


def test_kwok_node_initialize_writes_both_addresses_whatever_the_node_has() -> None:
    fixed = node_addresses_always(UPSTREAM_SHAPE)
    assert "$hasInternalIP" not in fixed and "$hasHostname" not in fixed
    assert fixed.startswith("conditions: []\n") and "{{ with NodePort }}" in fixed
    block = fixed[fixed.index("addresses:") : fixed.index("{{ with NodePort }}")]
    filled = block.replace("{{ NodeIP | Quote }}", '"127.0.0.1"')
    filled = filled.replace("{{ .metadata.name | Quote }}", '"kaic-gpu-0"')
    assert yaml.safe_load(filled) == {
        "addresses": [
            {"address": "127.0.0.1", "type": "InternalIP"},
            {"address": "kaic-gpu-0", "type": "Hostname"},
        ]
    }


def test_a_changed_kwok_stage_stops_the_lab_with_a_clear_error() -> None:
    from kaic.errors import LabError

    with pytest.raises(LabError, match="node-initialize stage changed"):
        node_addresses_always("addresses: []\n")


def test_kube_proxy_runs_in_nftables_mode_inside_the_lab_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaic.lab.components.kube_proxy import KubeProxy
    from kaic.lab.components.porter import Porter
    from kaic.lab.context import LabContext
    from kaic.lab.options import LabOptions

    monkeypatch.setenv(network.REGISTRY_ENV, str(tmp_path / "registry"))
    state = _lab(tmp_path, "unit")
    ctx = LabContext(options=LabOptions(name="unit", state_dir=state), bin=tmp_path / "bin")
    net = ctx.net
    assert net == ctx.net  # recorded in the state directory, allocated once
    argv = KubeProxy().argv(ctx)
    assert argv[:5] == ["ip", "netns", "exec", net.netns, str(tmp_path / "bin" / "kube-proxy")]
    assert "--proxy-mode=nftables" in argv
    assert f"--cluster-cidr={net.layout.network}" in argv
    assert "--hostname-override=kaic-cpu-0" in argv
    kubeconfig = next(a for a in argv if a.startswith("--kubeconfig="))
    text = Path(kubeconfig.split("=", 1)[1]).read_text()
    assert f"https://127.0.0.1:{ctx.port('netns-relay')}" in text
    porter = Porter().argv(ctx)
    assert porter[:4] == ["ip", "netns", "exec", net.netns]
    assert f"--pod-cidr={net.pod_cidr}" in porter


def test_a_large_lab_takes_aligned_consecutive_blocks_with_every_range_scaled() -> None:
    assert network.span_for(500 + 1 + 1024) == 1
    assert network.span_for(5000 + 1 + 1024) == 4
    assert network.span_for(10000 + 1024) == 8
    with pytest.raises(network.LabError):
        network.span_for(20000)
    lay = Layout(4, 4)
    assert str(lay.network) == "198.18.64.0/18" and list(lay.blocks) == [4, 5, 6, 7]
    assert lay.pod_cidr.num_addresses - 2 == 8190 and str(lay.pod_cidr) == "198.18.64.0/19"
    parts = [lay.pod_cidr, lay.service_cidr, lay.link, lay.gateway_cidr]
    assert all(p.subnet_of(lay.network) for p in parts)
    assert not any(a.overlaps(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    for bad in ((2, 4), (BLOCKS - 2, 4), (0, 3)):
        with pytest.raises(ValueError):
            Layout(*bad)
    net = LabNet("big", "/x", lay)
    assert LabNet.from_json(net.to_json()) == net
    assert LabNet.from_json({"lab": "a", "state": "/y", "block": 3}).layout == Layout(3)


def test_a_large_lab_skips_blocks_that_others_hold_and_keeps_its_own(tmp_path: Path) -> None:
    reg = tmp_path / "registry"
    small = network.allocate("small", _lab(tmp_path, "small"), root=reg)
    assert small.layout.block == 0
    big = network.allocate("big", _lab(tmp_path, "big"), root=reg, span=4)
    assert big.layout.block == 4 and big.layout.span == 4
    assert not big.layout.network.overlaps(small.layout.network)
    assert network.allocate("big", tmp_path / "labs" / "big", root=reg) == big
    others = [network.allocate(f"o{i}", _lab(tmp_path, f"o{i}"), root=reg) for i in range(3)]
    assert [o.layout.block for o in others] == [1, 2, 3]
    nxt = network.allocate("next", _lab(tmp_path, "next"), root=reg)
    assert nxt.layout.block == 8  # 4..7 are the large lab's
    network.release(big, root=reg)
    assert network.allocate("again", _lab(tmp_path, "again"), root=reg).layout.block == 4
