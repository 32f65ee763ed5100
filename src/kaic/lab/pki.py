"""The lab's PKI: a cluster CA, serving and client certificates, service-account keys,
the aggregation layer's front-proxy pair, and the admin kubeconfig.

Owns: files under ``<state>/pki`` and ``<state>/kubeconfig``. Must not start anything.
Everything is ECDSA P-256, valid for a year, and names only loopback addresses.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)
APISERVER_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated files (all PEM)."""

    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def apiserver_crt(self) -> Path:
        return self.dir / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.dir / "apiserver.key"

    @property
    def admin_crt(self) -> Path:
        return self.dir / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.dir / "admin.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    @property
    def front_proxy_ca_crt(self) -> Path:
        return self.dir / "front-proxy-ca.crt"

    @property
    def front_proxy_client_crt(self) -> Path:
        return self.dir / "front-proxy-client.crt"

    @property
    def front_proxy_client_key(self) -> Path:
        return self.dir / "front-proxy-client.key"

    def exists(self) -> bool:
        return all(
            p.is_file()
            for p in (
                self.ca_crt,
                self.apiserver_crt,
                self.admin_crt,
                self.sa_key,
                self.front_proxy_client_crt,
            )
        )


_Issuer = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs)


def _issue(
    cn: str,
    *,
    orgs: tuple[str, ...] = (),
    ca: _Issuer | None = None,
    is_ca: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    eku: tuple[x509.ObjectIdentifier, ...] = (),
) -> _Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = _name(cn, orgs)
    issuer_key, issuer_name = (key, subject) if ca is None else (ca[0], ca[1].subject)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if is_ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if dns or ips:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return key, b.sign(issuer_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_pair(dir: Path, stem: str, pair: _Issuer) -> None:
    (dir / f"{stem}.crt").write_bytes(pair[1].public_bytes(serialization.Encoding.PEM))
    _write_key(dir / f"{stem}.key", pair[0])


def generate(dir: Path) -> Pki:
    """Create every certificate and key the lab needs in ``dir`` (idempotent)."""
    pki = Pki(dir)
    if pki.exists():
        return pki
    dir.mkdir(parents=True, exist_ok=True)
    ca = _issue("kaic-lab-ca", is_ca=True)
    _write_pair(dir, "ca", ca)
    _write_pair(
        dir,
        "apiserver",
        _issue(
            "kube-apiserver",
            ca=ca,
            dns=APISERVER_DNS,
            ips=("127.0.0.1", "::1"),
            eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
        ),
    )
    _write_pair(
        dir,
        "admin",
        _issue(
            "kaic-lab-admin",
            orgs=("system:masters",),
            ca=ca,
            eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        ),
    )
    sa = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki.sa_key, sa)
    pki.sa_pub.write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    fp_ca = _issue("kaic-lab-front-proxy-ca", is_ca=True)
    _write_pair(dir, "front-proxy-ca", fp_ca)
    _write_pair(
        dir,
        "front-proxy-client",
        _issue("front-proxy-client", ca=fp_ca, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
    )
    return pki


def issue_serving_cert(
    pki: Pki,
    dest: Path,
    stem: str,
    *,
    dns: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
) -> tuple[Path, Path]:
    """Issue a loopback serving certificate signed by the lab CA (for webhooks, adapters).

    Returns (cert, key) paths. Components use it for servers the apiserver dials.
    """
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_crt = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    dest.mkdir(parents=True, exist_ok=True)
    _write_pair(
        dest,
        stem,
        _issue(stem, ca=(ca_key, ca_crt), dns=dns, ips=ips, eku=(ExtendedKeyUsageOID.SERVER_AUTH,)),
    )
    return dest / f"{stem}.crt", dest / f"{stem}.key"


def write_kubeconfig(path: Path, pki: Pki, server: str, cluster: str) -> None:
    """Write an admin kubeconfig with absolute paths to the lab's certificates."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority": str(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": f"{cluster}-admin",
                "user": {
                    "client-certificate": str(pki.admin_crt),
                    "client-key": str(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {
                "name": cluster,
                "context": {"cluster": cluster, "user": f"{cluster}-admin", "namespace": "default"},
            }
        ],
        "current-context": cluster,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
