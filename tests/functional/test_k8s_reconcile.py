"""The BareMetalHost reconcile with the real kubectl against a real server (issue #19,
section 3): the spec drives the node (image + userData + online provision it, removing or
changing the image deprovisions it, online drives power), deletion waits for
metalplane's finalizer, a registration error is retried when the credentials Secret
changes, a node of the Bare Metal API is a host too, and a restart mid-way is survived.

The BMCs are sushy-tools' emulator (with HTTP basic authentication, so wrong credentials
are refused); the hosts' deploy interface is the fake one, slowed by ``fake_delays`` so
that every transition can be seen.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from metalplane.api.auth import hash_password
from metalplane.common import process
from metalplane.db import api as db_api
from metalplane.lab.lab import emulator_command, write_emulator_config
from metalplane.lab.rack import free_port
from tests.functional.test_k8s import Kubectl, kubeconfig
from tests.helpers.peers import Emulator
from tests.helpers.server import RunningServer, running_server

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")]

USER, PASSWORD = "admin", "password"
DELAYS = {"deploy": 1.5}  # each deploy, tear down and erase step: seen by the polls
IMAGE = {"url": "http://images.example/worker.qcow2", "checksum": "sha256:" + "ab" * 32,
         "format": "qcow2"}


@contextlib.contextmanager
def emulator_with_auth(tmp: Path, count: int = 2) -> Iterator[tuple[Emulator, Path]]:
    """sushy-tools' emulator asking HTTP basic credentials (``admin``/``password``, from
    an htpasswd file it reads on each request: rewrite it to change the BMC's password).
    Yields the emulator and that file."""
    systems = [{"uuid": f"00000000-0000-4000-8000-00000000000{i}", "name": f"fake-{i}",
                "power_state": "Off", "nics": [{"mac": f"52:54:00:bb:00:{i:02x}"}]}
               for i in range(count)]
    htpasswd = tmp / "bmc.htpasswd"
    htpasswd.write_text(f"{USER}:{hash_password(PASSWORD)}\n")
    port = free_port()
    cfg = tmp / "emulator.conf"
    write_emulator_config(cfg, port, tmp / "emulator-state", systems, "http://127.0.0.1:9")
    cfg.write_text(cfg.read_text() + f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}\n")
    log = open(tmp / "emulator.log", "w")  # noqa: SIM115 - closed below
    proc = process.spawn(emulator_command(cfg), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp / "emulator.log").read_text()[-2000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/redfish/v1/Systems", auth=(USER, PASSWORD),
                             timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "sushy-emulator did not answer"
            time.sleep(0.2)
        yield Emulator(url=url, systems=systems), htpasswd
    finally:
        process.stop(proc)
        log.close()


def bmc_power(emulator: Emulator, index: int) -> str:
    r = httpx.get(f"{emulator.url}/redfish/v1/Systems/{emulator.systems[index]['uuid']}",
                  auth=(USER, PASSWORD), timeout=10)
    r.raise_for_status()
    return str(r.json()["PowerState"])


def secret(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode()
                                       for k, v in data.items()}}


def host(name: str, emulator: Emulator, index: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": name}, "spec": {
                "online": True, "bootMACAddress": emulator.systems[index]["nics"][0]["mac"],
                "bmc": {"address": f"redfish+http://{emulator.url.removeprefix('http://')}"
                                   f"/redfish/v1/Systems/{emulator.systems[index]['uuid']}",
                        "credentialsName": f"{name}-bmc"}, **spec}}


def create(kubectl: Kubectl, tmp: Path, *docs: dict[str, Any]) -> None:
    path = tmp / "objects.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    kubectl("create", "--validate=false", "-f", str(path))


def get(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return dict(yaml.safe_load(kubectl("get", "bmh", name, "-o", "yaml").stdout))


def patch(kubectl: Kubectl, name: str, doc: dict[str, Any], kind: str = "bmh") -> None:
    kubectl("patch", kind, name, "--type", "merge", "-p", json.dumps(doc))


def states_until(kubectl: Kubectl, name: str, state: str, timeout: float = 60,
                 field: str = "{.status.provisioning.state}", again: bool = False
                 ) -> list[str]:
    """The distinct values of ``field`` seen, polling, until it is ``state`` (``again``:
    until it is ``state`` after another value, for a round trip; the status is written
    after the reconcile acted, so right after a patch it may still be the old one)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = kubectl("get", "bmh", name, "-o", f"jsonpath={field}", ok=False)
        value = r.stdout if r.returncode == 0 else "<gone>"
        if not seen or seen[-1] != value:
            seen.append(value)
        if value == state and (not again or len(seen) > 1):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"{name}: {field} went {seen}, never {state!r} in {timeout}s")


def test_the_spec_provisions_powers_deprovisions_and_deletes(tmp_path: Path) -> None:
    with emulator_with_auth(tmp_path) as (emulator, _), \
            running_server(tmp_path / "data", fake_delays=DELAYS) as server:
        kubectl = kubeconfig(server, tmp_path / "kubeconfig")
        create(kubectl, tmp_path, secret("w0-bmc", username=USER, password=PASSWORD),
               secret("w0-user-data", userData="#cloud-config\nhostname: w0\n"),
               secret("w0-network-data", networkData=json.dumps({"links": [], "networks": []})),
               secret("w0-meta-data", metaData="role: worker\nrack: r3\n"),
               host("w0", emulator, 0))
        seen = states_until(kubectl, "w0", "available")
        assert "inspecting" in seen and seen[-1] == "available"
        doc = get(kubectl, "w0")
        assert doc["metadata"]["finalizers"] == ["baremetalhost.metal3.io"]
        # online: true on an available host without an image just powers it on
        states_until(kubectl, "w0", "true", field="{.status.poweredOn}")
        assert bmc_power(emulator, 0) == "On"
        patch(kubectl, "w0", {"spec": {"online": False}})
        states_until(kubectl, "w0", "false", field="{.status.poweredOn}")
        assert bmc_power(emulator, 0) == "Off"

        # image + userData + networkData + consumerRef + online: provisioned
        patch(kubectl, "w0", {"spec": {
            "image": IMAGE, "online": True, "userData": {"name": "w0-user-data"},
            "networkData": {"name": "w0-network-data"}, "metaData": {"name": "w0-meta-data"},
            "consumerRef": {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine",
                            "name": "workers-0", "namespace": "default"}}})
        seen = states_until(kubectl, "w0", "provisioned")
        assert seen[-2:] == ["provisioning", "provisioned"], seen
        doc = get(kubectl, "w0")
        assert doc["status"]["provisioning"]["image"] == IMAGE
        assert doc["status"]["poweredOn"] is True and bmc_power(emulator, 0) == "On"
        assert doc["status"]["operationalStatus"] == "OK"
        node = db_api.get_node(server.service.db, "w0")
        assert node.instance_info["image_source"] == IMAGE["url"]
        assert node.instance_info["image_checksum"] == IMAGE["checksum"]
        assert node.instance_info["image_disk_format"] == "qcow2"
        drive = node.instance_info["configdrive"]
        assert drive["user_data"] == "#cloud-config\nhostname: w0\n"
        assert drive["network_data"] == {"links": [], "networks": []}
        assert drive["meta_data"]["metal3-name"] == "w0"
        assert drive["meta_data"]["role"] == "worker" and drive["meta_data"]["rack"] == "r3"
        assert drive["meta_data"]["uuid"] == doc["metadata"]["uid"]
        assert node.extra["consumer"] == "workers-0"
        shown = server.node("w0")
        assert shown["instance_info"]["configdrive"] == "******"  # never in clear on /v1
        row = kubectl("get", "bmh", "w0", "--no-headers").stdout.split()
        assert row[1:4] == ["OK", "provisioned", "workers-0"]

        # online: false powers a provisioned host off, and it stays provisioned
        patch(kubectl, "w0", {"spec": {"online": False}})
        states_until(kubectl, "w0", "false", field="{.status.poweredOn}")
        assert bmc_power(emulator, 0) == "Off"
        patch(kubectl, "w0", {"spec": {"online": True}})
        states_until(kubectl, "w0", "true", field="{.status.poweredOn}")

        # a new image: deprovisioned, then provisioned with it
        new = {**IMAGE, "url": "http://images.example/worker-2.qcow2"}
        patch(kubectl, "w0", {"spec": {"image": new}})
        seen = states_until(kubectl, "w0", "provisioned", timeout=90, again=True)
        assert "deprovisioning" in seen and "provisioning" in seen, seen
        assert seen.index("deprovisioning") < seen.index("provisioning")
        assert get(kubectl, "w0")["status"]["provisioning"]["image"] == new

        # the image and the consumer removed: deprovisioned back to available
        patch(kubectl, "w0", {"spec": {"image": None, "consumerRef": None}})
        seen = states_until(kubectl, "w0", "available", timeout=90)
        assert seen[-2:] == ["deprovisioning", "available"], seen
        node = db_api.get_node(server.service.db, "w0")
        assert "consumer" not in (node.extra or {})
        assert node.provision_state == "available" and node.instance_uuid is None

        # deletion: a finalizer of the user's keeps the object after the node is gone
        patch(kubectl, "w0", {"metadata": {"finalizers": ["baremetalhost.metal3.io",
                                                          "example.com/keep"]}})
        r = kubectl("delete", "bmh", "w0", "--wait=false")
        assert 'baremetalhost.metal3.io "w0" deleted' in r.stdout
        doc = get(kubectl, "w0")
        assert doc["metadata"]["deletionTimestamp"]
        seen = states_until(kubectl, "w0", "example.com/keep",
                            field="{.metadata.finalizers[*]}")
        assert server.http.get("/v1/nodes/w0").status_code == 404
        assert bmc_power(emulator, 0) == "Off"  # powered off before delete
        r = kubectl("patch", "bmh", "w0", "--type", "merge", "-p",
                    '{"metadata": {"finalizers": ["example.com/more"]}}', ok=False)
        assert "no new finalizers can be added" in r.stderr
        patch(kubectl, "w0", {"metadata": {"finalizers": None}})
        assert "NotFound" in kubectl("get", "bmh", "w0", ok=False).stderr


def test_a_provisioned_host_deleted_is_deprovisioned_first(tmp_path: Path) -> None:
    with emulator_with_auth(tmp_path) as (emulator, _), \
            running_server(tmp_path / "data", fake_delays=DELAYS) as server:
        kubectl = kubeconfig(server, tmp_path / "kubeconfig")
        create(kubectl, tmp_path, secret("w1-bmc", username=USER, password=PASSWORD),
               host("w1", emulator, 1, image=IMAGE))
        seen = states_until(kubectl, "w1", "provisioned", timeout=90)
        assert seen[-2:] == ["provisioning", "provisioned"], seen
        r = httpx.delete(f"{server.k8s_url}/apis/metal3.io/v1alpha1/namespaces/default/"
                         "baremetalhosts/w1")
        assert r.status_code == 200  # the object, held by the finalizer, as kube-apiserver
        doc = r.json()
        assert doc["kind"] == "BareMetalHost" and doc["metadata"]["deletionTimestamp"]
        assert doc["metadata"]["finalizers"] == ["baremetalhost.metal3.io"]
        seen = states_until(kubectl, "w1", "<gone>", timeout=90)
        assert "deprovisioning" in seen, seen
        assert server.http.get("/v1/nodes/w1").status_code == 404
        assert bmc_power(emulator, 1) == "Off"


def test_registration_retried_with_new_credentials_and_a_failed_deploy(
        tmp_path: Path) -> None:
    with emulator_with_auth(tmp_path) as (emulator, htpasswd), \
            running_server(tmp_path / "data", fake_delays=DELAYS) as server:
        kubectl = kubeconfig(server, tmp_path / "kubeconfig")
        create(kubectl, tmp_path, secret("w0-bmc", username=USER, password="wrong"),
               host("w0", emulator, 0, online=False))
        states_until(kubectl, "w0", "registration error", field="{.status.errorType}")
        doc = get(kubectl, "w0")
        assert doc["status"]["operationalStatus"] == "error"
        assert doc["status"]["provisioning"]["state"] == "registering"
        time.sleep(2)  # not retried while the Secret is unchanged
        assert get(kubectl, "w0")["status"]["errorType"] == "registration error"

        patch(kubectl, "w0-bmc", {"data": {"password": base64.b64encode(
            PASSWORD.encode()).decode()}}, kind="secret")
        states_until(kubectl, "w0", "available")
        doc = get(kubectl, "w0")
        assert doc["status"]["operationalStatus"] == "OK" and not doc["status"]["errorType"]
        info = server.node("w0")["driver_info"]
        assert info["redfish_username"] == USER and info["redfish_password"] == "******"

        # the BMC refuses a power change: a power management error, retried (backing
        # off) until the BMC takes it
        htpasswd.write_text(f"{USER}:{hash_password('rotated')}\n")
        patch(kubectl, "w0", {"spec": {"online": True}})
        states_until(kubectl, "w0", "power management error", field="{.status.errorType}")
        assert get(kubectl, "w0")["status"]["poweredOn"] is False
        htpasswd.write_text(f"{USER}:{hash_password(PASSWORD)}\n")
        states_until(kubectl, "w0", "true", field="{.status.poweredOn}")
        assert get(kubectl, "w0")["status"]["operationalStatus"] == "OK"
        assert bmc_power(emulator, 0) == "On"

        # the BMC's password changes under a deploy: provisioning error, not retried
        htpasswd.write_text(f"{USER}:{hash_password('rotated')}\n")
        patch(kubectl, "w0", {"spec": {"image": IMAGE}})
        states_until(kubectl, "w0", "provisioning error", field="{.status.errorType}",
                     timeout=90)
        doc = get(kubectl, "w0")
        assert doc["status"]["operationalStatus"] == "error"
        assert doc["status"]["provisioning"]["state"] == "provisioning"
        assert doc["status"]["errorMessage"]
        htpasswd.write_text(f"{USER}:{hash_password(PASSWORD)}\n")  # the BMC answers again
        time.sleep(3)
        assert get(kubectl, "w0")["status"]["errorType"] == "provisioning error"
        assert server.node("w0")["provision_state"] == "deploy failed"
        # a new image (a change of spec) is retried
        patch(kubectl, "w0", {"spec": {"image": {**IMAGE, "checksum": "sha256:" + "cd" * 32}}})
        states_until(kubectl, "w0", "provisioned", timeout=90)
        assert get(kubectl, "w0")["status"]["operationalStatus"] == "OK"


def test_a_node_of_the_bare_metal_api_is_a_host(server: RunningServer,
                                                  tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    node = server.create_node(name="rack1-n1")
    r = server.http.post("/v1/ports", json={"node_uuid": node["uuid"], "pxe_enabled": True,
                                            "address": "52:54:00:cc:00:01"})
    assert r.status_code == 201, r.text
    other = server.create_node(name="Not_A_DNS_Name")
    doc = get(kubectl, "rack1-n1")  # at once: the two views never disagree
    assert doc["metadata"]["namespace"] == "default"
    assert doc["spec"] == {"online": False, "bootMACAddress": "52:54:00:cc:00:01"}
    assert doc["status"]["provisioning"] == {"state": "registering", "ID": node["uuid"],
                                             "image": {}}
    assert other["uuid"] in kubectl("get", "bmh", "-o", "name").stdout  # named by UUID

    # not driven behind the operator's back: an enroll node of /v1 stays in enroll
    time.sleep(2)
    assert server.node("rack1-n1")["provision_state"] == "enroll"

    # power changes through /v1 show in the host's spec (it mirrors the node)
    assert server.http.put("/v1/nodes/rack1-n1/states/power",
                           json={"target": "power on"}).status_code == 202
    deadline = time.monotonic() + 30
    while get(kubectl, "rack1-n1")["spec"]["online"] is not True:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    # a user's write of its spec hands it to the reconcile: registered, made available
    patch(kubectl, "rack1-n1", {"spec": {"description": "adopted by kubectl"}})
    states_until(kubectl, "rack1-n1", "available")
    assert server.node("rack1-n1")["description"] == "adopted by kubectl"

    # deleting the node through /v1 removes its host
    assert server.http.delete(f"/v1/nodes/{other['uuid']}").status_code == 204
    assert other["uuid"] not in kubectl("get", "bmh", "-o", "name").stdout
    # and deleting the host deletes the node
    kubectl("delete", "bmh", "rack1-n1")
    assert server.http.get("/v1/nodes/rack1-n1").status_code == 404


def test_a_restart_mid_way(tmp_path: Path) -> None:
    """The server stops while a host is being provisioned, and while a provisioned host
    is deprovisioned for a new image; a new server on the same data directory finishes
    both (the reconcile is level-based: it starts again from the nodes)."""
    data = tmp_path / "data"
    new = {**IMAGE, "url": "http://images.example/worker-2.qcow2"}
    with emulator_with_auth(tmp_path) as (emulator, _):
        with running_server(data, fake_delays=DELAYS) as server:
            kubectl = kubeconfig(server, tmp_path / "kubeconfig")
            create(kubectl, tmp_path, secret("w0-bmc", username=USER, password=PASSWORD),
                   secret("w1-bmc", username=USER, password=PASSWORD),
                   host("w0", emulator, 0), host("w1", emulator, 1, image=IMAGE))
            states_until(kubectl, "w0", "available")
            states_until(kubectl, "w1", "provisioned", timeout=90)
            patch(kubectl, "w0", {"spec": {"image": IMAGE}})
            patch(kubectl, "w1", {"spec": {"image": new}})
            states_until(kubectl, "w0", "provisioning")
            states_until(kubectl, "w1", "deprovisioning")
        # stopped: the running steps finished, nothing more was started
        with running_server(data, fake_delays=DELAYS) as server:
            kubectl = kubeconfig(server, tmp_path / "kubeconfig2")
            states_until(kubectl, "w0", "provisioned", timeout=90)
            states_until(kubectl, "w1", "provisioned", timeout=90)
            assert get(kubectl, "w1")["status"]["provisioning"]["image"] == new
            assert get(kubectl, "w0")["status"]["provisioning"]["image"] == IMAGE
