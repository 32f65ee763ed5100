"""Pieces of the lab that need no cluster: options, PKI, components, simulated devices."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kaic.cli.main import cli
from kaic.errors import UsageError
from kaic.lab import LabContext, LabOptions, all_components, proc
from kaic.lab.component import select
from kaic.lab.components.nodes import device_class, node_capacity, resource_slice
from kaic.lab.pki import generate, issue_serving_cert


def test_options_reject_bad_values_with_a_usage_error() -> None:
    for kwargs, needle in (
        ({"name": "Bad_Name"}, "invalid lab name"),
        ({"version": "1.36"}, "invalid Kubernetes version"),
        ({"version": "v1.33.4"}, "too old"),
        ({"accelerators": "tpu"}, "--accelerators"),
        ({"gpus_per_node": 0}, "--gpus-per-node"),
        ({"nodes": -1}, "--nodes"),
    ):
        with pytest.raises(UsageError, match=needle):
            LabOptions(**kwargs)  # type: ignore[arg-type]


def test_options_round_trip_through_json(tmp_path: Path) -> None:
    o = LabOptions(name="x", without=frozenset({"kueue"}), state_dir=tmp_path)
    assert LabOptions.from_json(o.to_json()) == o
    assert o.same_shape(LabOptions.from_json(o.to_json()))
    assert not o.same_shape(LabOptions(name="x", state_dir=tmp_path))


def test_components_can_be_left_out_but_core_ones_cannot() -> None:
    names = [c.name for c in select(frozenset({"gateway-api"}), frozenset())]
    assert "gateway-api" not in names and "kube-apiserver" in names
    with pytest.raises(UsageError, match="cannot leave out core"):
        select(frozenset({"etcd"}), frozenset())
    with pytest.raises(UsageError, match="unknown lab component"):
        select(frozenset({"nope"}), frozenset())
    orders = [c.order for c in all_components()]
    assert orders == sorted(orders)


def test_pki_issues_a_loopback_serving_cert_and_an_admin_client_cert(tmp_path: Path) -> None:
    pki = generate(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    srv = x509.load_pem_x509_certificate(pki.apiserver_crt.read_bytes())
    srv.verify_directly_issued_by(ca)
    sans = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert all(ip.is_loopback for ip in sans.get_values_for_type(x509.IPAddress))
    admin = x509.load_pem_x509_certificate(pki.admin_crt.read_bytes())
    admin.verify_directly_issued_by(ca)
    orgs = admin.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    assert (pki.sa_key.stat().st_mode & 0o077) == 0
    before = pki.ca_crt.read_bytes()
    generate(tmp_path / "pki")  # idempotent: keeps the CA
    assert pki.ca_crt.read_bytes() == before
    crt, _key = issue_serving_cert(pki, tmp_path / "webhook", "webhook")
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def _ctx(**kw: object) -> LabContext:
    return LabContext(options=LabOptions(name="u", **kw), bin=Path("/nonexistent"))  # type: ignore[arg-type]


def test_simulated_gpus_look_like_nvidia_dra_driver_devices() -> None:
    ctx = _ctx(gpus_per_node=4)
    s = resource_slice(ctx, "kaic-gpu-0", "uid-1")
    assert s["spec"]["nodeName"] == "kaic-gpu-0"
    assert s["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    devs = s["spec"]["devices"]
    assert [d["name"] for d in devs] == ["gpu-0", "gpu-1", "gpu-2", "gpu-3"]
    uuids = {d["attributes"]["uuid"]["string"] for d in devs}
    assert len(uuids) == 4
    a = devs[0]["attributes"]
    for key in (
        "index",
        "uuid",
        "productName",
        "driverVersion",
        "cudaDriverVersion",
        "resource.kubernetes.io/pcieRoot",
    ):
        assert key in a
    assert devs[0]["capacity"]["memory"]["value"] == "80Gi"
    assert "gpu.nvidia.com" in device_class()["spec"]["selectors"][0]["cel"]["expression"]


def test_device_plugin_capacity_follows_the_accelerator_mode() -> None:
    assert node_capacity(_ctx(accelerators="device-plugin"), gpu=True)["nvidia.com/gpu"] == "8"
    assert "nvidia.com/gpu" not in node_capacity(_ctx(accelerators="dra"), gpu=True)
    assert "nvidia.com/gpu" not in node_capacity(_ctx(accelerators="none"), gpu=True)
    assert "nvidia.com/gpu" not in node_capacity(_ctx(accelerators="both"), gpu=False)


def test_listening_sockets_of_this_process_are_found(tmp_path: Path) -> None:
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert ("127.0.0.1", port) in proc.listening_sockets(os.getpid())
        assert proc.port_in_use(port)


def test_spawned_process_is_detached_tracked_and_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "sleeper.pid"
    pid = proc.spawn(
        ["/bin/sleep", "60"], log=tmp_path / "sleeper.log", pidfile=pidfile, cwd=tmp_path
    )
    assert proc.read_pid(pidfile) == pid
    assert proc.stop(pidfile)
    assert proc.read_pid(pidfile) is None and not pidfile.exists()
    assert not proc.alive(pid)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["lab", "up", "--accelerators", "tpu"], "Invalid value for '--accelerators'"),
        (["lab", "up", "--without", "etcd"], "cannot leave out core"),
        (["lab", "up", "--name", "UPPER"], "invalid lab name"),
        (["lab", "status", "--name", "does-not-exist-anywhere"], "no lab named"),
    ],
)
def test_cli_reports_bad_input_in_one_line_with_exit_code_2(
    args: list[str],
    needle: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kaic.cli.main import main

    monkeypatch.setenv("KAIC_CACHE", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("kaic: error: ") and err.count("\n") == 1, err
    assert needle in err


def test_cli_lab_components_lists_the_optional_crd_sets() -> None:
    r = CliRunner().invoke(cli, ["lab", "components"])
    assert r.exit_code == 0
    for name in ("gateway-api", "jobset", "kueue", "inference-extension", "kwok"):
        assert name in r.output
