"""``metalplane kubeconfig``'s document and the ``k8s_port`` setting's checks."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from metalplane.cli.common import CliError
from metalplane.cli.kubeconfig import build_kubeconfig, k8s_server_url
from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid


def test_the_server_url_is_the_apis_host_on_k8s_port() -> None:
    assert k8s_server_url("https://bm.example:6385", 6443) == "https://bm.example:6443"
    assert k8s_server_url("http://[::1]:6385/", 7443) == "http://[::1]:7443"
    with pytest.raises(CliError):
        k8s_server_url("nohost", 6443)


def test_a_kubeconfig_with_a_ca_and_the_users_token() -> None:
    doc = build_kubeconfig("https://h:6443", "ops", "pw", b"PEM", namespace="lab")
    assert doc["kind"] == "Config" and doc["current-context"] == "metalplane"
    cluster = doc["clusters"][0]["cluster"]
    assert cluster == {"server": "https://h:6443",
                       "certificate-authority-data": base64.b64encode(b"PEM").decode()}
    assert base64.b64decode(doc["users"][0]["user"]["token"]) == b"ops:pw"
    assert doc["contexts"][0]["context"]["namespace"] == "lab"
    assert build_kubeconfig("http://h:6443")["users"][0]["user"] == {}


def test_k8s_port_needs_a_port_of_its_own(tmp_path: Path) -> None:
    Settings(data_dir=tmp_path, k8s_port=0).validate()
    for bad in ({"k8s_port": 6385}, {"k8s_port": 9696}, {"k8s_port": 70000}):
        with pytest.raises(Invalid, match="k8s_port"):
            Settings(data_dir=tmp_path, **bad).validate()  # type: ignore[arg-type]
