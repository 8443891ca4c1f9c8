"""kubectl behaves as with a real cluster (issue #19): the real kubectl against a real server
whose hosts' BMCs are sushy-tools' emulator. ``create`` validates without
``--validate=false`` (kubectl 1.32 leaves it to the server through ``fieldValidation``,
kubectl 1.20 validates against ``/openapi/v2`` itself: either refuses an unknown field
naming it); ``apply`` twice, ``edit`` through ``KUBE_EDITOR``, ``describe``; ``patch`` as
strategic merge patch on a Secret, JSON patch on a host, and strategic merge patch on a
host refused with 415 as kube-apiserver refuses it for custom resources."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
import yaml

from metalplane.api.k8s_openapi_pb import ACCEPTED, CONTENT_TYPE, decode_document
from tests.functional.test_k8s import (  # the fixtures and helpers of the first slice
    HOST,
    emulator,  # noqa: F401  (a fixture, used by name)
    kubeconfig,
    manifests,
    wait_state,
)
from tests.helpers.peers import Emulator
from tests.helpers.server import RunningServer

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")]

SECRET = "openshift-worker-0-bmc-secret"


def unknown_field_named(stderr: str, path: str) -> bool:
    """Whether kubectl's error names the unknown field ``path`` (``spec.foo``): the
    server's strict decoding (kubectl >= 1.25) or kubectl's own validation (1.20)."""
    parent, _, leaf = path.rpartition(".")
    return f'unknown field "{path}"' in stderr or (
        f'unknown field "{leaf}" in io.metal3.v1alpha1.BareMetalHost.{parent}' in stderr)



def description_becomes(server: RunningServer, value: str, timeout: float = 20) -> bool:
    """True once the node's description is ``value`` (the reconcile carries the spec's
    node fields at once, or a pass later when the node is busy)."""
    deadline = time.monotonic() + timeout
    while server.node(HOST)["description"] != value:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True

def test_create_validates_without_validate_false(server: RunningServer,
                                                 emulator: Emulator,  # noqa: F811
                                                 tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    good = manifests(emulator, tmp_path)
    assert kubectl("create", "-f", str(good)).stdout.splitlines() == [
        f"secret/{SECRET} created", f"baremetalhost.metalkube.org/{HOST} created"]
    wait_state(kubectl, HOST, "available")

    # /openapi/v2 as kubectl fetches it: gnostic's protobuf, or JSON
    r = httpx.get(f"{server.k8s_url}/openapi/v2", headers={"Accept": ACCEPTED[0]})
    assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE
    assert decode_document(r.content).swagger == "2.0"
    doc = httpx.get(f"{server.k8s_url}/openapi/v2").json()
    assert "io.metal3.v1alpha1.BareMetalHost" in doc["definitions"]

    secret, host = list(yaml.safe_load_all(good.read_text()))
    bad = tmp_path / "bad.yaml"
    other = {**host, "metadata": {"name": "worker-1"},
             "spec": {**host["spec"], "foo": 1, "bootMACAddress": "00:ab:4f:d8:9e:01"}}
    bad.write_text(yaml.safe_dump(other))
    r = kubectl("create", "-f", str(bad), ok=False)
    assert r.returncode != 0 and unknown_field_named(r.stderr, "spec.foo"), r.stderr
    # --validate=false: the server's own refusal, naming the field too
    r = kubectl("create", "--validate=false", "-f", str(bad), ok=False)
    assert r.returncode != 0
    assert 'BareMetalHost "worker-1" is invalid: spec.foo: unknown field "foo"' in r.stderr
    bad.write_text(yaml.safe_dump({**secret, "metadata": {"name": "s2", "colour": "red"}}))
    r = kubectl("create", "-f", str(bad), ok=False)
    assert r.returncode != 0 and "colour" in r.stderr
    assert kubectl("get", "bmh", "-o", "name").stdout.split() == [
        f"baremetalhost.metal3.io/{HOST}"]  # nothing half-made
    assert "s2" not in kubectl("get", "secrets", "-o", "name").stdout

    # the server's strict decoding itself, as kube-apiserver words it
    url = f"{server.k8s_url}/apis/metal3.io/v1alpha1/namespaces/default/baremetalhosts"
    other["apiVersion"] = "metal3.io/v1alpha1"
    other["spec"]["bar"] = 2
    r = httpx.post(url, params={"fieldValidation": "Strict"}, json=other)
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    assert r.json()["message"] == (
        'BareMetalHost in version "v1alpha1" cannot be handled as a BareMetalHost: strict '
        'decoding error: unknown field "spec.foo", unknown field "spec.bar"')
    r = httpx.post(url, params={"dryRun": "All"}, json=host)  # never done for real
    assert r.status_code == 400

    out = kubectl("explain", "bmh.spec.bmc").stdout
    assert "credentialsName" in out and "disableCertificateVerification" in out


def test_apply_twice_edit_and_describe(server: RunningServer,
                                       emulator: Emulator,  # noqa: F811
                                       tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    crs = manifests(emulator, tmp_path)
    assert kubectl("apply", "-f", str(crs)).stdout.splitlines() == [
        f"secret/{SECRET} created", f"baremetalhost.metalkube.org/{HOST} created"]
    wait_state(kubectl, HOST, "available")

    def versions() -> tuple[str, str]:
        return (kubectl("get", "secret", SECRET, "-o",
                        "jsonpath={.metadata.resourceVersion}").stdout,
                kubectl("get", "bmh", HOST, "-o",
                        "jsonpath={.metadata.resourceVersion}").stdout)

    before = versions()
    assert kubectl("apply", "-f", str(crs)).stdout.splitlines() == [
        f"secret/{SECRET} unchanged", f"baremetalhost.metalkube.org/{HOST} unchanged"]
    assert versions() == before

    # a changed manifest: the Secret by strategic merge patch, the host by merge patch
    docs = list(yaml.safe_load_all(crs.read_text()))
    docs[0]["data"]["password"] = "c2VjcmV0"  # "secret"
    docs[1]["metadata"]["labels"] = {"role": "infra"}
    docs[1]["spec"]["description"] = "rack 3"
    crs.write_text(yaml.safe_dump_all(docs))
    assert kubectl("apply", "-f", str(crs)).stdout.splitlines() == [
        f"secret/{SECRET} configured", f"baremetalhost.metalkube.org/{HOST} configured"]
    secret = yaml.safe_load(kubectl("get", "secret", SECRET, "-o", "yaml").stdout)
    assert secret["data"] == {"username": "YWRtaW4=", "password": "c2VjcmV0"}
    assert "role=infra" in kubectl("get", "bmh", HOST, "--show-labels").stdout
    assert description_becomes(server, "rack 3")
    assert kubectl("apply", "-f", str(crs)).stdout.splitlines()[1].endswith("unchanged")

    editor = "sed -i -e 's/^  description: rack 3$/  description: rack 4/'"
    r = kubectl("edit", "bmh", HOST, env={"KUBE_EDITOR": editor})
    assert r.stdout.strip() == f"baremetalhost.metal3.io/{HOST} edited"
    assert description_becomes(server, "rack 4")
    assert kubectl("get", "bmh", HOST, "-o", "jsonpath={.metadata.generation}").stdout == "3"
    r = kubectl("edit", "bmh", HOST, env={"KUBE_EDITOR": "true"})  # nothing changed
    assert "Edit cancelled, no changes made." in r.stdout + r.stderr
    editor = "sed -i -e 's/^type: Opaque$/type: Opaque\\nbogus: 1/'"
    r = kubectl("edit", "secret", SECRET, env={"KUBE_EDITOR": editor}, ok=False)
    assert r.returncode != 0  # named by the server (1.32), or in the kept copy (1.20)
    assert 'unknown field "bogus"' in r.stderr or "is invalid" in r.stderr
    assert "bogus" not in kubectl("get", "secret", SECRET, "-o", "yaml").stdout

    out = kubectl("describe", "bmh", HOST).stdout
    assert f"Name:         {HOST}" in out and "Labels:       role=infra" in out
    assert "Credentials Name:  " + SECRET in out and "Description:         rack 4" in out
    assert "State:  available" in out
    assert out.rstrip().splitlines()[-1].split() == ["Events:", "<none>"]
    events = httpx.get(f"{server.k8s_url}/api/v1/namespaces/default/events",
                       params={"fieldSelector": f"involvedObject.name={HOST}"})
    assert events.status_code == 200 and events.json()["kind"] == "EventList"
    assert httpx.get(f"{server.k8s_url}/api/v1/namespaces/nope/events").status_code == 404


def test_patch_types(server: RunningServer, emulator: Emulator,  # noqa: F811
                     tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    kubectl("create", "-f", str(manifests(emulator, tmp_path)))
    wait_state(kubectl, HOST, "available")

    def data() -> dict[str, str]:
        return dict(yaml.safe_load(kubectl("get", "secret", SECRET, "-o",
                                           "yaml").stdout)["data"])

    # strategic merge patch (kubectl's default type) on a Secret
    r = kubectl("patch", "secret", SECRET, "--type", "strategic", "-p",
                '{"data": {"token": "dG9r"}, "metadata": {"finalizers": ["a.io/x"]}}')
    assert r.stdout.strip() == f"secret/{SECRET} patched"
    assert data() == {"username": "YWRtaW4=", "password": "cGFzc3dvcmQ=", "token": "dG9r"}
    kubectl("patch", "secret", SECRET, "-p", '{"metadata": {"finalizers": ["b.io/y"]}}')
    assert kubectl("get", "secret", SECRET, "-o", "jsonpath={.metadata.finalizers}"
                   ).stdout == '["b.io/y","a.io/x"]'  # finalizers merge, as a set
    kubectl("patch", "secret", SECRET, "-p",
            '{"data": {"$patch": "replace", "username": "dQ==", "password": "cA=="}, '
            '"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.io/x", "b.io/y"]}}')
    assert data() == {"username": "dQ==", "password": "cA=="}
    assert kubectl("get", "secret", SECRET, "-o", "jsonpath={.metadata.finalizers}"
                   ).stdout == ""
    rv = kubectl("get", "secret", SECRET, "-o", "jsonpath={.metadata.resourceVersion}").stdout
    r = kubectl("patch", "secret", SECRET, "-p", '{"data": {"username": "dQ=="}}')
    assert r.stdout.strip() == f"secret/{SECRET} patched (no change)"
    assert kubectl("get", "secret", SECRET, "-o",
                   "jsonpath={.metadata.resourceVersion}").stdout == rv
    r = kubectl("patch", "secret", SECRET, "-p", '{"data": {"$patch": "frobnicate"}}',
                ok=False)
    assert "Error from server (BadRequest)" in r.stderr and "frobnicate" in r.stderr
    kubectl("patch", "namespace", "default", "-p", '{"metadata": {"labels": {"a": "b"}}}')
    assert "a=b" in kubectl("get", "ns", "default", "--show-labels").stdout

    # JSON patch (RFC 6902) on a host
    r = kubectl("patch", "bmh", HOST, "--type", "json", "-p",
                '[{"op": "add", "path": "/spec/description", "value": "rack 5"}, '
                '{"op": "replace", "path": "/spec/online", "value": false}]')
    assert r.stdout.strip() == f"baremetalhost.metal3.io/{HOST} patched"
    assert description_becomes(server, "rack 5")
    assert kubectl("get", "bmh", HOST, "-o", "jsonpath={.spec.online}").stdout == "false"
    r = kubectl("patch", "bmh", HOST, "--type", "json", "-p",
                '[{"op": "replace", "path": "/spec/nope/x", "value": 1}]', ok=False)
    assert r.returncode != 0 and "/spec/nope/x" in r.stderr
    r = kubectl("patch", "bmh", HOST, "--type", "json", "-p",
                '[{"op": "add", "path": "/spec/foo", "value": 1}]', ok=False)
    assert r.returncode != 0 and 'spec.foo: unknown field "foo"' in r.stderr

    # strategic merge patch on a custom resource: 415, as kube-apiserver answers
    r = kubectl("patch", "bmh", HOST, "-p", '{"spec": {"online": true}}', ok=False)
    assert r.returncode != 0
    assert "the body of the request was in an unknown format - accepted media types " \
           "include: application/json-patch+json, application/merge-patch+json" in r.stderr
    url = (f"{server.k8s_url}/apis/metal3.io/v1alpha1/namespaces/default/baremetalhosts/"
           f"{HOST}")
    r = httpx.patch(url, content=b'{"spec": {"online": true}}',
                    headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status_code == 415 and r.json()["reason"] == "UnsupportedMediaType"
    assert kubectl("get", "bmh", HOST, "-o", "jsonpath={.spec.online}").stdout == "false"


def test_typed_verbs_send_protobuf(server: RunningServer, tmp_path: Path) -> None:
    """``kubectl create namespace`` and ``create secret generic`` send their object as
    ``application/vnd.kubernetes.protobuf`` (kubectl 1.32; 1.20 sends JSON)."""
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    assert kubectl("create", "namespace", "lab").stdout.strip() == "namespace/lab created"
    r = kubectl("create", "secret", "generic", "creds", "-n", "lab",
                "--from-literal=username=admin", "--from-literal=password=pw")
    assert r.stdout.strip() == "secret/creds created"
    secret = yaml.safe_load(kubectl("get", "secret", "creds", "-n", "lab", "-o",
                                    "yaml").stdout)
    assert secret["data"] == {"username": "YWRtaW4=", "password": "cHc="}
    assert secret["type"] == "Opaque" and secret["metadata"]["namespace"] == "lab"
    r = kubectl("create", "secret", "generic", "x", "-n", "nope", "--from-literal=a=b",
                ok=False)
    assert r.returncode != 0 and 'namespaces "nope" not found' in r.stderr
    r = kubectl("create", "namespace", "lab", ok=False)
    assert "AlreadyExists" in r.stderr
    r = httpx.post(f"{server.k8s_url}/api/v1/namespaces", content=b"k8s\x00\x0a\xff",
                   headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert r.status_code == 400 and r.json()["kind"] == "Status"
