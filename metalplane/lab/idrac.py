"""The lab's undiscovered nodes' BMCs: each an "iDRAC" at ``https://<its bmc_address>:443``.

A node nobody enrolled is discovered by its inventory, and the seed's inspection rule then
points metalplane at ``drac_address`` (the inventory's ``bmc_address``) with ``root`` /
``calvin`` and the iDRAC's system ``/redfish/v1/Systems/System.Embedded.1``. So each such
node gets a sushy-tools emulator of its own (fake driver, one system named
``System.Embedded.1``, booting from the network first as a new server does) bound to its
BMC address (``127.0.10.N``, loopback) on 443, over TLS with a certificate for that address
issued by the lab's own CA (``<state_dir>/tls/ca.pem``; the server trusts it through the
``redfish_verify_ca`` setting, verification stays on), and HTTP basic authentication from
an Apache-style users file with a bcrypt digest (the one format sushy-tools reads).
Sources: sushy-tools' ``SUSHY_EMULATOR_SSL_CERT``/``_SSL_KEY``/``_AUTH_FILE`` options,
RFC 5280 (the certificates), DMTF Redfish ``ComputerSystem.Reset``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import bcrypt
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from metalplane.lab.rack import LabError

__all__ = ["IDRAC_PASSWORD", "IDRAC_SYSTEM", "IDRAC_USERNAME", "bmc_spec", "make_ca",
           "power_on", "read_power", "tick", "write_emulator_config"]

IDRAC_SYSTEM = "System.Embedded.1"
IDRAC_USERNAME, IDRAC_PASSWORD = "root", "calvin"  # Dell's factory default, as the seed's rule
_DAY = dt.timedelta(days=1)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_ca(directory: Path) -> Path:
    """A CA of the lab's own (``ca.pem``, ``ca.key`` in ``directory``), valid a week.
    Returns the certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metalplane lab CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + 7 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(key, directory / "ca.key")
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory / "ca.pem"


def _issue(ca_dir: Path, address: str, out: Path) -> tuple[Path, Path]:
    """A server certificate for IP ``address`` signed by the CA in ``ca_dir``: the
    certificate and key paths (``out/<address>.pem``, ``.key``)."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + 7 * _DAY)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    pem, key_path = out / f"{address}.pem", out / f"{address}.key"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return pem, key_path


def bmc_spec(address: str, ca: Path) -> dict[str, Any]:
    """What the lab records of an iDRAC: its URL, system path, credentials and CA."""
    return {"url": f"https://{address}", "address": address,
            "system": f"/redfish/v1/Systems/{IDRAC_SYSTEM}", "username": IDRAC_USERNAME,
            "password": IDRAC_PASSWORD, "ca": str(ca)}


def write_emulator_config(state: Path, node: dict[str, Any], notify_url: str) -> Path:
    """sushy-emulator's configuration for ``node``'s iDRAC (its ``idrac`` spec, from
    :func:`bmc_spec`): a certificate for its address, a users file, one fake system. The
    configuration file's path."""
    bmc = node["idrac"]
    tls = state / "tls"
    cert, key = _issue(tls, bmc["address"], tls)
    users = state / f"idrac-{node['name']}.htpasswd"
    digest = bcrypt.hashpw(bmc["password"].encode(), bcrypt.gensalt(rounds=5)).decode()
    users.write_text(f"{bmc['username']}:{digest}\n")
    users.chmod(0o600)
    system = {"uuid": node["uuid"], "name": IDRAC_SYSTEM, "power_state": "Off",
              "boot_device": "Pxe", "external_notifier": True, "nics": [{"mac": node["mac"]}]}
    cfg = state / f"idrac-{node['name']}.conf"
    emu_state = state / f"idrac-{node['name']}-state"
    cfg.write_text(
        f"SUSHY_EMULATOR_LISTEN_IP = {bmc['address']!r}\n"
        "SUSHY_EMULATOR_LISTEN_PORT = 443\n"
        "SUSHY_EMULATOR_FAKE_DRIVER = True\n"
        f"SUSHY_EMULATOR_STATE_DIR = {str(emu_state)!r}\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {[system]!r}\n"
        f"SUSHY_EMULATOR_SSL_CERT = {str(cert)!r}\n"
        f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}\n"
        f"SUSHY_EMULATOR_AUTH_FILE = {str(users)!r}\n"
        f"EXTERNAL_NOTIFICATION_URL = {notify_url!r}\n")
    return cfg


def _client(bmc: dict[str, Any]) -> httpx.Client:
    # follow_redirects: sushy-tools answers a system by its name with a 307 to its UUID
    return httpx.Client(verify=ssl.create_default_context(cafile=bmc["ca"]),
                        auth=(bmc["username"], bmc["password"]), timeout=10,
                        follow_redirects=True)


def read_power(bmc: dict[str, Any]) -> str:
    """The system's ``PowerState`` (``On``/``Off``), through Redfish over TLS with the lab's
    CA and the iDRAC's credentials. Raises :class:`LabError`."""
    try:
        with _client(bmc) as http:
            r = http.get(f"{bmc['url']}{bmc['system']}")
            r.raise_for_status()
            return str(r.json().get("PowerState", "unknown"))
    except (httpx.HTTPError, ValueError) as exc:
        raise LabError(f"the iDRAC at {bmc['url']} did not answer: {exc}") from None


def power_on(bmc: dict[str, Any]) -> None:
    """Power the system on through its iDRAC (``ComputerSystem.Reset`` ``On``), as a person
    pressing the power button through the BMC would. Raises :class:`LabError`."""
    try:
        with _client(bmc) as http:
            r = http.post(f"{bmc['url']}{bmc['system']}/Actions/ComputerSystem.Reset",
                          json={"ResetType": "On"})
            r.raise_for_status()
    except httpx.HTTPError as exc:
        raise LabError(f"powering on through the iDRAC at {bmc['url']} failed: {exc}") from None


def tick(bmc: dict[str, Any]) -> None:
    """Read the system once (the fake driver applies a pending power change when read).
    Raises ``OSError``/``httpx.HTTPError`` as the caller's clock expects."""
    with _client(bmc) as http:
        http.get(f"{bmc['url']}{bmc['system']}")
