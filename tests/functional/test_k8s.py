"""The Kubernetes-style API with the real kubectl against a real server, whose hosts'
BMCs are sushy-tools' emulator (issue #19): create, get (table, yaml, selectors), merge
patch, a stale replace refused, delete, and bad manifests answered with a Status."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from metalplane.api.auth import hash_password
from tests.functional.test_tls import make_ca_and_cert
from tests.helpers.peers import Emulator, sushy_emulator
from tests.helpers.server import RunningServer, running_server

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")]

EXAMPLE = Path(__file__).parents[2] / "examples" / "metal3" / "worker_crs.yaml"
HOST = "openshift-worker-0"


@dataclass
class Kubectl:
    kubeconfig: Path

    def __call__(self, *args: str, ok: bool = True, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS``; ``env`` adds to the environment (``KUBE_EDITOR``)."""
        cache = self.kubeconfig.parent / "kube-cache"  # not the user's ~/.kube/cache
        r = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                            str(cache), *args],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, **env} if env else None)
        if ok:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r


def kubeconfig(server: RunningServer, path: Path, *options: str, scheme: str = "http"
               ) -> Kubectl:
    """``metalplane kubeconfig`` written to ``path``; ``options`` go before the command
    (credentials) or after it (``--ca-file``)."""
    port = server.k8s_url.rsplit(":", 1)[1]
    url = server.url.replace("http://", f"{scheme}://")
    before = [o for o in options if not o.startswith("--ca-file")]
    after = [o for o in options if o.startswith("--ca-file")]
    r = subprocess.run([sys.executable, "-m", "metalplane.cli.main", "--url", url,
                        *before, "kubeconfig", "--k8s-port", port, *after],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    path.write_text(r.stdout)
    return Kubectl(path)


def manifests(emulator: Emulator, tmp: Path, index: int = 0, **spec: Any) -> Path:
    """The example's Secret and host, its BMC address the emulator's system ``index``."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    host = docs[1]
    host["spec"]["bmc"]["address"] = (
        f"redfish+http://{emulator.url.removeprefix('http://')}/redfish/v1/Systems/"
        f"{emulator.systems[index]['uuid']}")
    host["spec"].update(spec)
    out = tmp / f"crs-{index}.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    return out


def wait_state(kubectl: Kubectl, name: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        seen = kubectl("get", "bmh", name, "-o",
                       "jsonpath={.status.provisioning.state}").stdout
        if seen == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} is {seen!r}, not {state!r}, after {timeout}s")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with sushy_emulator(tmp_path, count=2) as emu:
        yield emu


def test_kubectl_manages_a_baremetalhost(server: RunningServer, emulator: Emulator,
                                         tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    assert "v1.32.0+metalplane" in kubectl("version").stdout
    resources = kubectl("api-resources").stdout
    assert ["baremetalhosts", "bmh,bmhost", "metal3.io/v1alpha1", "true", "BareMetalHost"] \
        in [line.split() for line in resources.splitlines()]  # widths vary with the kinds
    assert "metalkube.org/v1alpha1" in resources

    r = kubectl("create", "--validate=false", "-f", str(manifests(emulator, tmp_path)))
    assert r.stdout.splitlines() == [
        "secret/openshift-worker-0-bmc-secret created",
        f"baremetalhost.metalkube.org/{HOST} created"]
    wait_state(kubectl, HOST, "available")
    node = server.node(HOST)
    assert node["driver"] == "redfish" and node["provision_state"] == "available"
    assert node["driver_info"]["redfish_password"] == "******"
    ports = server.http.get(f"/v1/nodes/{HOST}/ports").json()["ports"]
    assert "00:ab:4f:d8:9e:fa" in [p["address"] for p in ports]

    table = kubectl("get", "bmh").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "PROVISIONING", "STATUS", "CONSUMER", "BMC",
                                "HARDWARE", "PROFILE", "ONLINE", "ERROR", "AGE"]
    assert table[1].split()[:4] == [HOST, "OK", "available", "redfish+http://"
                                    + emulator.url.removeprefix("http://") + "/redfish/v1/"
                                    f"Systems/{emulator.systems[0]['uuid']}"]
    doc = yaml.safe_load(kubectl("get", "baremetalhost", HOST, "-o", "yaml").stdout)
    assert doc["apiVersion"] == "metal3.io/v1alpha1" and doc["kind"] == "BareMetalHost"
    assert doc["spec"]["bmc"]["credentialsName"] == "openshift-worker-0-bmc-secret"
    assert doc["status"]["operationalStatus"] == "OK"
    assert doc["status"]["goodCredentials"]["credentials"]["name"] == \
        "openshift-worker-0-bmc-secret"
    assert doc["metadata"]["generation"] == 1 and doc["metadata"]["uid"]
    assert doc["status"]["provisioning"]["ID"] == node["uuid"]
    secret = yaml.safe_load(kubectl("get", "secret", "openshift-worker-0-bmc-secret",
                                    "-o", "yaml").stdout)
    assert secret["data"] == {"username": "YWRtaW4=", "password": "cGFzc3dvcmQ="}
    assert "default" in kubectl("get", "namespaces").stdout

    assert HOST in kubectl("get", "bmh", "-l", "role=worker").stdout
    assert HOST not in kubectl("get", "bmh", "-l", "role=master").stdout
    assert HOST not in kubectl("get", "bmh", "-l", "role!=worker").stdout
    assert HOST in kubectl("get", "bmh", "--field-selector", f"metadata.name={HOST}").stdout
    assert HOST not in kubectl("get", "bmh", "--field-selector", "metadata.name=x").stdout
    assert HOST in kubectl("get", "baremetalhosts.metalkube.org", HOST).stdout  # the alias group

    old = tmp_path / "old.yaml"
    old.write_text(kubectl("get", "bmh", HOST, "-o", "yaml").stdout)
    r = kubectl("patch", "bmh", HOST, "--type", "merge", "-p",
                '{"spec": {"consumerRef": {"name": "ostest-worker-0-jmhtc"}, '
                '"description": "rack 3"}}')
    assert "patched" in r.stdout
    row = kubectl("get", "bmh", HOST, "--no-headers").stdout.split()
    assert row[3] == "ostest-worker-0-jmhtc"
    deadline = time.monotonic() + 30  # carried now, or by the reconcile if it was busy
    while (node := server.node(HOST))["description"] != "rack 3":
        assert time.monotonic() < deadline, node
        time.sleep(0.2)
    assert node["extra"]["consumer"] == "ostest-worker-0-jmhtc"
    assert kubectl("get", "bmh", HOST, "-o", "jsonpath={.metadata.generation}").stdout == "2"

    r = kubectl("replace", "--validate=false", "-f", str(old), ok=False)  # stale version
    assert r.returncode != 0
    assert "Error from server (Conflict)" in r.stderr and "has been modified" in r.stderr
    r = kubectl("patch", "bmh", HOST, "-p", '{"spec": {"online": false}}', ok=False)
    assert r.returncode != 0 and "accepted media types include: application/json-patch+json, " \
        "application/merge-patch+json" in r.stderr  # 415: no strategic merge patch for a CR

    assert kubectl("delete", "bmh", HOST).stdout.strip() == \
        f'baremetalhost.metal3.io "{HOST}" deleted'
    assert server.http.get(f"/v1/nodes/{HOST}").status_code == 404
    r = kubectl("get", "bmh", HOST, ok=False)
    assert f'baremetalhosts.metal3.io "{HOST}" not found' in r.stderr
    kubectl("delete", "secret", "openshift-worker-0-bmc-secret")


def test_bad_manifests_get_a_status_naming_the_field(server: RunningServer,
                                                     emulator: Emulator,
                                                     tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    good = manifests(emulator, tmp_path)
    secret, host = list(yaml.safe_load_all(good.read_text()))
    bad = tmp_path / "bad.yaml"

    def create(doc: dict[str, Any]) -> str:
        bad.write_text(yaml.safe_dump(doc))
        r = kubectl("create", "--validate=false", "-f", str(bad), ok=False)
        assert r.returncode != 0
        return r.stderr

    assert 'spec.bmc.credentialsName: Secret "openshift-worker-0-bmc-secret" not found' \
        in create(host)
    kubectl("create", "--validate=false", "-f", str(good))
    wait_state(kubectl, HOST, "available")
    assert "already exists" in create(host)
    other = {**host, "metadata": {"name": "worker-1"}}
    assert 'spec.bogus: unknown field "bogus"' in create(
        {**other, "spec": {**host["spec"], "bogus": 1}})
    assert "spec.bmc.address: BMC address 'ftp://10.0.0.1' must start with" in create(
        {**other, "spec": {**host["spec"], "bmc": {**host["spec"]["bmc"],
                                                    "address": "ftp://10.0.0.1"}}})
    assert "spec.online: must be a boolean" in create(
        {**other, "spec": {**host["spec"], "online": "yes"}})
    assert "spec.bootMACAddress" in create(other)  # the MAC is worker-0's
    assert kubectl("get", "bmh", "-o", "name").stdout.split() == [
        f"baremetalhost.metal3.io/{HOST}"]  # nothing half-made
    assert [n["name"] for n in server.http.get("/v1/nodes").json()["nodes"]] == [HOST]

    # the Status itself, as kube-apiserver shapes it
    url = f"{server.k8s_url}/apis/metalkube.org/v1alpha1/namespaces/default/baremetalhosts"
    r = httpx.post(url, json={**other, "spec": {**host["spec"], "bogus": 1}})
    assert r.status_code == 422
    status = r.json()
    assert status["kind"] == "Status" and status["apiVersion"] == "v1"
    assert status["status"] == "Failure" and status["reason"] == "Invalid"
    assert status["code"] == 422
    assert status["details"]["causes"][0]["field"] == "spec.bogus"
    assert status["details"] == {**status["details"], "name": "worker-1",
                                 "group": "metal3.io", "kind": "BareMetalHost"}
    r = httpx.put(f"{url}/{HOST}", json={**host, "metadata": {"name": HOST,
                                                              "resourceVersion": "1"}})
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    r = httpx.get(f"{url}/nope")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    assert secret["kind"] == "Secret"
    r = httpx.post(url.replace("metalkube.org", "metal3.io"), json=host)  # the wrong group
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"


def test_kubectl_with_a_users_credentials_over_tls(tmp_path: Path) -> None:
    """kubectl sends credentials only over TLS (clientcmd loads a user's auth only for a
    TLS transport): the kubeconfig's token, base64 of user:password, over the API's TLS."""
    ca, cert, key = make_ca_and_cert(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "htpasswd").write_text(f"ops:{hash_password('correct horse')}\n"
                                   f"viewer:{hash_password('pw')}::reader\n")
    with running_server(data, auth_strategy="http_basic", tls_cert_file=str(cert),
                        tls_key_file=str(key)) as server:
        good = kubeconfig(server, tmp_path / "good", "--username", "ops", "--password",
                          "correct horse", f"--ca-file={ca}", scheme="https")
        assert "certificate-authority-data" in good.kubeconfig.read_text()
        assert "default" in good("get", "namespaces").stdout
        assert "No resources found" in good("get", "bmh").stderr
        secret = tmp_path / "s1.yaml"
        secret.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                                          "metadata": {"name": "s1"},
                                          "stringData": {"username": "u"}}))
        good("create", "--validate=false", "-f", str(secret))
        assert yaml.safe_load(good("get", "secret", "s1", "-o", "yaml").stdout)["data"] == \
            {"username": "dQ=="}  # stringData is written into data, as Kubernetes does
        good("create", "secret", "generic", "s2", "--from-literal=a=b")  # protobuf (1.32)
        assert good("get", "secret", "s2", "-o", "jsonpath={.data.a}").stdout == "Yg=="
        bad = kubeconfig(server, tmp_path / "bad", "--username", "ops", "--password", "no",
                         f"--ca-file={ca}", scheme="https")
        r = bad("get", "bmh", ok=False)
        assert r.returncode != 0 and "Invalid user name or password" in r.stderr
        viewer = kubeconfig(server, tmp_path / "viewer", "--username", "viewer",
                            "--password", "pw", f"--ca-file={ca}", scheme="https")
        assert "s1" in viewer("get", "secrets").stdout
        r = viewer("delete", "secret", "s1", ok=False)
        assert r.returncode != 0 and "Forbidden" in r.stderr
        answer = httpx.get(f"{server.k8s_url.replace('http:', 'https:')}/api/v1/namespaces",
                           verify=ssl.create_default_context(cafile=str(ca)),
                           auth=("ops", "correct horse"))  # plain HTTP basic too
        assert answer.status_code == 200 and answer.json()["kind"] == "NamespaceList"


def test_externally_provisioned_hosts_other_namespaces_and_deletes(
        server: RunningServer, emulator: Emulator, tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    ns = tmp_path / "ns.yaml"  # ("kubectl create namespace" sends protobuf: later)
    ns.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lab\n")
    kubectl("create", "--validate=false", "-f", str(ns))
    crs = manifests(emulator, tmp_path, 1, externallyProvisioned=True,
                    consumerRef={"name": "ostest-master-0"},
                    bootMACAddress=emulator.systems[1]["nics"][0]["mac"])
    kubectl("create", "--validate=false", "-n", "lab", "-f", str(crs))
    deadline = time.monotonic() + 60
    while "externally provisioned" not in (out := kubectl("get", "bmh", "-A").stdout):
        assert time.monotonic() < deadline, out
        time.sleep(0.2)
    row = out.splitlines()[1].split()
    assert row[:6] == ["lab", HOST, "OK", "externally", "provisioned", "ostest-master-0"]
    assert server.node(f"lab~{HOST}")["provision_state"] == "active"
    assert "No resources found" in kubectl("get", "bmh").stderr  # not in default

    # the spec is what is wanted: a node deployed through the Bare Metal API under a host
    # whose spec names no image is deprovisioned (tests/functional/test_k8s_reconcile.py
    # provisions from the spec)
    kubectl("create", "--validate=false", "-f", str(manifests(emulator, tmp_path, 0)))
    wait_state(kubectl, HOST, "available")
    assert server.provision(HOST, "deploy").status_code == 202
    # (the node leaves available at once; the host's stored status follows a moment later,
    # so the round trip is watched on the node)
    deadline = time.monotonic() + 90
    while server.node(HOST)["provision_state"] != "available":
        assert time.monotonic() < deadline, server.node(HOST)
        time.sleep(0.2)
    wait_state(kubectl, HOST, "available")
    kubectl("delete", "bmh", HOST)
    assert server.http.get(f"/v1/nodes/{HOST}").status_code == 404

    # an externally provisioned one is detached and deleted, its machine left running
    kubectl("delete", "bmh", HOST, "-n", "lab")
    assert server.http.get(f"/v1/nodes/lab~{HOST}").status_code == 404
    r = kubectl("delete", "namespace", "default", ok=False)
    assert "built in" in r.stderr


def test_repeated_lists_follow_every_write(server: RunningServer) -> None:
    """Lists at an unchanged resourceVersion are answered from the last one (as
    kube-apiserver's watch cache): each write, of any object, still shows in the next."""
    url = f"{server.k8s_url}/api/v1/namespaces/default/secrets"

    def listed() -> tuple[int, dict[str, dict[str, Any]]]:
        doc = httpx.get(url).json()
        return int(doc["metadata"]["resourceVersion"]), {
            s["metadata"]["name"]: s for s in doc["items"]}

    assert httpx.post(url, json={"metadata": {"name": "a"},
                                 "stringData": {"k": "v"}}).status_code == 201
    rv1, first = listed()
    rv2, second = listed()
    assert rv1 == rv2 and first == second and list(first) == ["a"]
    patch = {"metadata": {"labels": {"role": "x"}}}
    assert httpx.patch(f"{url}/a", json=patch, headers={
        "Content-Type": "application/merge-patch+json"}).status_code == 200
    rv3, third = listed()
    assert rv3 > rv2 and third["a"]["metadata"]["labels"] == {"role": "x"}
    assert httpx.post(url, json={"metadata": {"name": "b"}}).status_code == 201
    rv4, fourth = listed()
    assert rv4 > rv3 and sorted(fourth) == ["a", "b"]
    assert httpx.delete(f"{url}/a").status_code == 200
    rv5, fifth = listed()
    assert rv5 > rv4 and list(fifth) == ["b"]
    # another namespace's list is its own
    other = f"{server.k8s_url}/api/v1/namespaces/kube-system/secrets"
    assert httpx.get(other).json()["items"] == []
