"""The API over TLS (issue #17): a certificate from a CA the test makes, and the field's
client (openstacksdk) trusting it through ``cacert``, as an operator's clouds.yaml would."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import keystoneauth1.exceptions
import openstack
import openstack.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from metalplane.drivers.modules.agent import boot_url
from tests.helpers.server import RunningServer, running_server

pytestmark = [pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
              pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning")]


def _pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def make_ca_and_cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1: (ca, cert, key) PEM paths."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metalplane test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (_pem(tmp / "ca.pem", ca.public_bytes(pem)),
            _pem(tmp / "cert.pem", cert.public_bytes(pem)),
            _pem(tmp / "key.pem", key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())))


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[RunningServer, str, Path]]:
    ca, cert, key = make_ca_and_cert(tmp_path)
    with running_server(tmp_path / "data", tls_cert_file=str(cert),
                        tls_key_file=str(key)) as server:
        yield server, server.url.replace("http://", "https://"), ca


def test_openstacksdk_over_tls_with_cacert(tls: tuple[RunningServer, str, Path]) -> None:
    server, url, ca = tls
    conn = openstack.connection.Connection(auth_type="none", baremetal_endpoint_override=url,
                                           cacert=str(ca))
    try:
        node = conn.baremetal.create_node(name="tls-1", driver="fake-hardware")
        assert [n.name for n in conn.baremetal.nodes()] == ["tls-1"]
        assert node.provision_state == "enroll"
    finally:
        conn.close()
    # the Networking listener is TLS too
    r = httpx.get(server.network_url.replace("http://", "https://") + "/",
                  verify=ssl.create_default_context(cafile=str(ca)))
    assert r.status_code == 200 and "versions" in r.json()


def test_an_untrusted_or_plain_client_gets_nothing(tls: tuple[RunningServer, str, Path]
                                                   ) -> None:
    server, url, _ = tls
    conn = openstack.connection.Connection(auth_type="none", baremetal_endpoint_override=url)
    try:
        with pytest.raises((openstack.exceptions.SDKException,
                            keystoneauth1.exceptions.ClientException)):
            list(conn.baremetal.nodes())  # the system CAs do not know the test's CA
    finally:
        conn.close()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/v1", timeout=5)  # plain HTTP to the TLS port


def test_the_boot_server_over_tls_when_asked(tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_cert(tmp_path)
    with running_server(tmp_path / "data", tls_cert_file=str(cert), tls_key_file=str(key),
                        boot_tls=True) as server:
        boot = str(server.boot.base_url).replace("http://", "https://")
        r = httpx.get(f"{boot}/boot/none.ipxe",
                      verify=ssl.create_default_context(cafile=str(ca)))
        assert r.status_code == 404  # TLS answered; no node boots
        assert server.service.settings.boot_listen_addresses[0] in boot
        assert boot_url(server.service.settings).startswith("https://")
