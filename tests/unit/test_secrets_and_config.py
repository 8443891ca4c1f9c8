from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid, MetalplaneError
from metalplane.common.secrets import MASK, RedactingFilter, SecretBox, mask_driver_info


def test_encrypt_round_trip_and_key_file(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "k" / "secret.key")
    assert stat.S_IMODE((tmp_path / "k" / "secret.key").stat().st_mode) == 0o600
    stored = box.encrypt_driver_info({"redfish_password": "pw", "redfish_username": "u"})
    assert stored["redfish_password"].startswith("fernet:")
    assert stored["redfish_username"] == "u"
    assert box.encrypt_driver_info(stored) == stored  # not encrypted twice
    assert SecretBox(tmp_path / "k" / "secret.key").decrypt_driver_info(stored)[
        "redfish_password"] == "pw"
    with pytest.raises(MetalplaneError, match="another key"):
        SecretBox(tmp_path / "other.key").decrypt_driver_info(stored)


def test_mask() -> None:
    masked = mask_driver_info({"ipmi_password": "x", "ipmi_username": "u",
                               "redfish_password": "", "snmp_auth_key": "k"})
    assert masked == {"ipmi_password": MASK, "ipmi_username": "u", "redfish_password": "",
                      "snmp_auth_key": MASK}


def test_redacting_filter(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "secret.key")
    box.decrypt_driver_info(box.encrypt_driver_info({"ipmi_password": "hunter2-abc"}))
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "pw=%s", ("hunter2-abc",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == f"pw={MASK}"


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METALPLANE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("METALPLANE_WORKERS", "7")
    monkeypatch.setenv("METALPLANE_FAKE_DELAYS", "deploy=1.5, power=0.1")
    s = Settings.from_env(port=7000)
    assert s.data_dir == tmp_path and s.workers == 7 and s.port == 7000
    assert s.fake_delays == {"deploy": 1.5, "power": 0.1}
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'metalplane.db'}"
    assert s.effective_auth_strategy == "noauth"
    assert Settings.from_env(host="0.0.0.0").effective_auth_strategy == "http_basic"
    monkeypatch.setenv("METALPLANE_WORKERS", "many")
    with pytest.raises(Invalid, match="METALPLANE_WORKERS"):
        Settings.from_env()


def test_bad_auth_strategy() -> None:
    with pytest.raises(Invalid, match="auth_strategy"):
        Settings.from_env(auth_strategy="kerberos")


def test_network_port_must_differ_from_port() -> None:
    with pytest.raises(Invalid, match="network_port and port are both 7000"):
        Settings(port=7000, network_port=7000).validate()
    Settings(port=7000, network_port=0).validate()  # none: fine


def test_tls_settings_and_the_clear_text_warning(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    with pytest.raises(Invalid, match="both"):
        Settings(data_dir=tmp_path, tls_cert_file=str(cert)).validate()
    with pytest.raises(Invalid, match="not a readable file"):
        Settings(data_dir=tmp_path, tls_cert_file=str(cert),
                 tls_key_file=str(tmp_path / "none.pem")).validate()
    exposed = Settings(data_dir=tmp_path, host="10.0.0.5")
    assert exposed.effective_auth_strategy == "http_basic"
    assert "in clear on 10.0.0.5:6385" in exposed.insecure_transport
    tls = Settings(data_dir=tmp_path, host="10.0.0.5", tls_cert_file=str(cert),
                   tls_key_file=str(key))
    tls.validate()
    assert tls.scheme == "https" and tls.insecure_transport == ""
    assert Settings(data_dir=tmp_path).insecure_transport == ""  # loopback
    assert Settings(data_dir=tmp_path, host="10.0.0.5",
                    auth_strategy="noauth").insecure_transport == ""


def test_boolean_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    monkeypatch.setenv("METALPLANE_BOOT_TLS", "false")
    assert Settings.from_env(data_dir=tmp_path).boot_tls is False
    monkeypatch.setenv("METALPLANE_BOOT_TLS", "yes")
    with pytest.raises(Invalid, match="boot_tls needs"):
        Settings.from_env(data_dir=tmp_path)
    assert Settings.from_env(data_dir=tmp_path, tls_cert_file=str(cert),
                             tls_key_file=str(key)).boot_tls is True
    monkeypatch.setenv("METALPLANE_BOOT_TLS", "maybe")
    with pytest.raises(Invalid, match="METALPLANE_BOOT_TLS"):
        Settings.from_env(data_dir=tmp_path)
