"""Watches and the status subresource of the Kubernetes-style API, with the real kubectl
against a real server whose hosts' BMCs are sushy-tools' emulator (issue #19):
``kubectl get bmh -w`` sees every provisioning state of a new host and its deletion,
timeouts end a watch, a too-old resourceVersion is answered 410 inside the stream, a
server stop ends open watches at once, and status is written apart from spec."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from metalplane.api import k8s_watch
from tests.functional.test_k8s import HOST, Kubectl, kubeconfig, manifests, wait_state
from tests.helpers.peers import Emulator, stop_process, sushy_emulator, wait_http
from tests.helpers.server import RunningServer, distinct_free_ports, running_server

pytestmark = [pytest.mark.functional,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")]

HOSTS = "/apis/metal3.io/v1alpha1/namespaces/default/baremetalhosts"
MACHINESET = Path(__file__).parents[2] / "examples" / "metal3" / "machineset.yaml"


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    with sushy_emulator(tmp_path, count=1) as emu:
        yield emu


@contextlib.contextmanager
def kubectl_watch(kubectl: Kubectl, out: Path, *args: str) -> Iterator[Path]:
    """``kubectl <args>`` running in the background, its output in ``out``; stopped (and
    waited for) on leaving, even on failure."""
    cache = kubectl.kubeconfig.parent / "kube-cache"
    with out.open("w") as sink:
        proc = subprocess.Popen(["kubectl", "--kubeconfig", str(kubectl.kubeconfig),
                                 "--cache-dir", str(cache), *args],
                                stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield out
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout}s")


def watch_lines(url: str, timeout: float = 30, count: int | None = None,
                headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The events of a watch read until it ends (or ``count`` of them); bounded by
    ``timeout`` seconds of silence."""
    events = []
    with httpx.stream("GET", url, timeout=timeout, headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "application/json"
        for line in r.iter_lines():
            if line:
                events.append(json.loads(line))
            if count is not None and len(events) >= count:
                break
    return events


class Background:
    """A watch read in a thread, its events in ``events`` as they come."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.client = httpx.Client(timeout=httpx.Timeout(60, read=None), headers=headers)
        self.thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self.thread.start()

    def _read(self, url: str) -> None:
        try:
            with self.client.stream("GET", url) as r:
                for line in r.iter_lines():
                    if line:
                        self.events.append(json.loads(line))
        except Exception as exc:  # kept for the test to look at
            self.error = exc

    def close(self) -> None:
        self.client.close()
        self.thread.join(timeout=10)


def states_in(text: str) -> list[str]:
    """The PROVISIONING STATUS column of a ``kubectl get bmh -w`` output, repeats merged."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("NAME",
                                                                                 "EVENT"))]
    out: list[str] = []
    for line in lines:
        for state in ("registering", "preparing", "inspecting", "available",
                      "provisioning", "provisioned", "deprovisioning"):
            if f" {state} " in line and (not out or out[-1] != state):
                out.append(state)
    return out


def test_kubectl_watch_sees_every_state_of_a_new_host(
        server: RunningServer, emulator: Emulator, tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    with kubectl_watch(kubectl, tmp_path / "events", "get", "bmh", "-w",
                       "--output-watch-events") as events, \
            kubectl_watch(kubectl, tmp_path / "table", "get", "bmh", "-w") as table, \
            kubectl_watch(kubectl, tmp_path / "json", "get", "bmh", "-w", "-o",
                          "json") as docs:
        # the three watches are open (an initial empty list, then the stream; kubectl can
        # take seconds to start on a loaded machine)
        wait_for(lambda: server.service.kube.hub.stats()["watchers"] >= 3, "three watches",
                 timeout=60)
        kubectl("create", "--validate=false", "-f", str(manifests(emulator, tmp_path)))
        wait_state(kubectl, HOST, "available")
        with kubectl_watch(kubectl, tmp_path / "one", "get", "bmh", HOST, "-w",
                           "--output-watch-events") as one:
            wait_for(lambda: HOST in one.read_text(), "row for the named watch")
            r = kubectl("delete", "bmh", HOST)
            assert "deleted" in r.stdout
            wait_for(lambda: "DELETED" in events.read_text(), "DELETED event")
            wait_for(lambda: "DELETED" in one.read_text(), "DELETED on the named watch")
        wait_for(lambda: docs.read_text().count('"kind": "BareMetalHost"') >= 5, "json")

    seen = events.read_text()
    rows = [ln.split() for ln in seen.splitlines()[1:] if ln.strip()]
    assert seen.splitlines()[0].split()[:3] == ["EVENT", "NAME", "STATUS"]  # headers once
    assert all(r[1] == HOST for r in rows), seen
    assert rows[0][0] == "ADDED" and rows[-1][0] == "DELETED", seen
    assert {r[0] for r in rows[1:-1]} == {"MODIFIED"}, seen
    # Metal3's names, in order: enroll/verifying, manage, inspect, provide (cleaning)
    assert states_in(seen) == ["registering", "preparing", "inspecting", "preparing",
                               "available"], seen
    assert states_in(table.read_text()) == states_in(seen), table.read_text()
    assert table.read_text().count("NAME ") == 1  # the plain table form: headers once

    # the JSON form: every object whole, generation unchanged by metalplane's status writes
    decoder, text, objs = json.JSONDecoder(), docs.read_text(), []
    at = text.find("{")
    while at != -1:
        obj, end = decoder.raw_decode(text, at)
        objs.append(obj)
        at = text.find("{", end)
    assert [o["metadata"]["generation"] for o in objs] == [1] * len(objs)
    versions = [int(o["metadata"]["resourceVersion"]) for o in objs]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert "provisioning" not in objs[0]["status"]  # just created: metalplane writes it
    # the last state before the deletion (then deletionTimestamp, maybe "deleting", gone)
    before = [o for o in objs if "deletionTimestamp" not in o["metadata"]]
    assert before[-1]["status"]["provisioning"]["state"] == "available"
    assert all(o["metadata"].get("deletionTimestamp") for o in objs[len(before):]), objs

    # the named watch (a fieldSelector) began with the host as it was
    # (MODIFIED while the finalizer holds the deletion: deletionTimestamp, then "deleting")
    named = [ln.split()[0] for ln in one.read_text().splitlines()[1:] if ln.strip()]
    assert named[0] == "ADDED" and named[-1] == "DELETED", named
    assert set(named[1:-1]) <= {"MODIFIED"}, named


def test_watch_timeouts_too_old_versions_and_selectors(
        server: RunningServer, emulator: Emulator, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    base = server.k8s_url
    kubectl("create", "--validate=false", "-f", str(manifests(emulator, tmp_path)))
    wait_state(kubectl, HOST, "available")
    # a quiet host from now on: the status writer paused (a late pass, e.g. of a power
    # sync on a loaded machine, would add a MODIFIED where these checks want none)
    server.service.kube.status_writer.write_pass()
    server.service.kube.status_writer.stop()

    # kubectl's --request-timeout ends its watch (the client leaves); timeoutSeconds ours
    started = time.monotonic()
    r = kubectl("get", "bmh", "-w", "--request-timeout=2s", ok=False)
    assert 1.5 < time.monotonic() - started < 15
    assert HOST in r.stdout
    hub = server.service.kube.hub  # the server's side ended with its client
    wait_for(lambda: hub.stats()["watchers"] == 0, "no watcher left", timeout=5)
    started = time.monotonic()
    listed = httpx.get(f"{base}{HOSTS}").json()
    rv = listed["metadata"]["resourceVersion"]
    assert watch_lines(f"{base}{HOSTS}?watch=true&timeoutSeconds=1&resourceVersion={rv}"
                       ) == []
    assert time.monotonic() - started < 5
    monkeypatch.setattr(k8s_watch, "BOOKMARK_INTERVAL", 0.3)  # kube-apiserver: a minute
    events = watch_lines(f"{base}{HOSTS}?watch=1&timeoutSeconds=1&allowWatchBookmarks=true"
                         f"&resourceVersion={rv}")
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[0]["object"] == {"kind": "BareMetalHost", "apiVersion": "metal3.io/v1alpha1",
                                   "metadata": {"resourceVersion": rv}}
    r = httpx.get(f"{base}{HOSTS}?watch=1&timeoutSeconds=soon")
    assert r.status_code == 400 and r.json()["reason"] == "BadRequest"
    assert "timeoutSeconds" in r.json()["message"]

    # resourceVersion 0: the current objects as ADDED first (here: as a Table)
    events = watch_lines(f"{base}{HOSTS}?watch=true&resourceVersion=0&timeoutSeconds=1",
                         headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert [e["type"] for e in events] == ["ADDED"]
    table = events[0]["object"]
    assert table["kind"] == "Table" and len(table["rows"]) == 1
    assert table["columnDefinitions"][2]["name"] == "Provisioning Status"
    assert table["rows"][0]["cells"][:3] == [HOST, "OK", "available"]

    # too old: an ERROR event with kube-apiserver's 410 Expired Status, and the end
    events = watch_lines(f"{base}/apis/metal3.io/v1alpha1/baremetalhosts?watch=true"
                         "&resourceVersion=1")
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410
    assert status["reason"] == "Expired" and status["status"] == "Failure"
    assert status["message"].startswith("too old resource version: 1 (")

    # a label selector: a host that stops matching is DELETED for it, then ADDED again
    watch = Background(f"{base}{HOSTS}?watch=true&labelSelector=role%3Dworker"
                       f"&resourceVersion={rv}&timeoutSeconds=30",
                       headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    try:
        patch = {"Content-Type": "application/merge-patch+json"}
        for role in ("master", "worker"):
            r = httpx.patch(f"{base}{HOSTS}/{HOST}", headers=patch,
                            content=json.dumps({"metadata": {"labels": {"role": role}}}))
            assert r.status_code == 200, r.text
            time.sleep(0.3)
        # (MODIFIED events of the status writer or the reconcile may come between)
        wait_for(lambda: [e["type"] for e in watch.events if e["type"] != "MODIFIED"]
                 == ["DELETED", "ADDED"], "DELETED, then ADDED")
        events = list(watch.events)  # the column definitions come with the first only
        assert events[0]["object"]["columnDefinitions"]
        assert all(e["object"]["columnDefinitions"] == [] for e in events[1:])
        added = next(e["object"] for e in events if e["type"] == "ADDED")
        assert added["rows"][0]["object"]["metadata"]["labels"] == {"role": "worker"}
    finally:
        watch.close()

    # generic over kinds: Secrets (data base64, as Kubernetes sends it) and Namespaces
    events = watch_lines(f"{base}/api/v1/namespaces/default/secrets?watch=true"
                         "&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "openshift-worker-0-bmc-secret")]
    assert events[0]["object"]["data"]["username"] == "YWRtaW4="
    events = watch_lines(f"{base}/api/v1/namespaces?watch=true&timeoutSeconds=1"
                         "&fieldSelector=metadata.name%3Ddefault")
    assert [e["object"]["metadata"]["name"] for e in events] == ["default"]
    kubectl("create", "--validate=false", "-f", str(MACHINESET))  # Cluster API's kinds too
    events = watch_lines(f"{base}/apis/cluster.x-k8s.io/v1beta1/namespaces/default/"
                         "machinesets?watch=true&timeoutSeconds=1")
    assert [(e["type"], e["object"]["kind"], e["object"]["metadata"]["name"])
            for e in events] == [("ADDED", "MachineSet", "workers")]


def test_status_subresource_is_apart_from_spec(
        server: RunningServer, emulator: Emulator, tmp_path: Path) -> None:
    kubectl = kubeconfig(server, tmp_path / "kubeconfig")
    base = server.k8s_url
    resources = httpx.get(f"{base}/apis/metal3.io/v1alpha1").json()["resources"]
    sub = [r for r in resources if r["name"] == "baremetalhosts/status"]
    assert sub and sub[0]["verbs"] == ["get", "patch", "update"]
    assert "watch" in next(r for r in resources if r["name"] == "baremetalhosts")["verbs"]

    kubectl("create", "--validate=false", "-f", str(manifests(emulator, tmp_path)))
    wait_state(kubectl, HOST, "available")
    doc = httpx.get(f"{base}{HOSTS}/{HOST}").json()
    # metalplane wrote the status many times; the spec's generation did not move
    assert doc["metadata"]["generation"] == 1 and int(doc["metadata"]["resourceVersion"]) > 5
    assert doc["status"]["provisioning"]["state"] == "available"
    assert doc["status"]["lastUpdated"]

    # metalplane's status writer is paused while the test writes status itself (it writes
    # its own over it at the next change of the node, checked at the end; on a loaded
    # machine a pass could otherwise land between a GET and its PUT)
    writer = server.service.kube.status_writer
    writer.write_pass()
    writer.stop()
    doc = httpx.get(f"{base}{HOSTS}/{HOST}").json()

    # the main resource ignores status (PUT and merge PATCH)
    put = json.loads(json.dumps(doc))
    put["status"]["operationalStatus"] = "detached"
    put["spec"]["description"] = "rack 3"
    r = httpx.put(f"{base}{HOSTS}/{HOST}", json=put)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == doc["status"] and r.json()["spec"]["description"] == "rack 3"
    assert r.json()["metadata"]["generation"] == 2  # the spec changed
    r = httpx.patch(f"{base}{HOSTS}/{HOST}", headers={
        "Content-Type": "application/merge-patch+json"},
        content=json.dumps({"status": {"operationalStatus": "detached"}}))
    assert r.status_code == 200 and r.json()["status"]["operationalStatus"] == "OK"
    assert r.json()["metadata"]["generation"] == 2

    # /status writes status only: the spec in the body is ignored, generation unchanged.
    # (metalplane writes its own over it at the next change of the node or the spec: let
    # its writer see the spec change above first.)
    server.service.kube.status_writer.write_pass()
    current = httpx.get(f"{base}{HOSTS}/{HOST}/status").json()
    assert current["status"]["provisioning"]["state"] == "available"
    body = json.loads(json.dumps(current))
    body["status"]["hardwareProfile"] = "dell"
    body["spec"]["description"] = "ignored"
    r = httpx.put(f"{base}{HOSTS}/{HOST}/status", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["status"]["hardwareProfile"] == "dell"
    assert r.json()["spec"]["description"] == "rack 3"
    assert r.json()["metadata"]["generation"] == 2
    assert int(r.json()["metadata"]["resourceVersion"]) > \
        int(current["metadata"]["resourceVersion"])
    r = httpx.put(f"{base}{HOSTS}/{HOST}/status", json=body)  # the old resourceVersion
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    r = httpx.patch(f"{base}{HOSTS}/{HOST}/status", headers={
        "Content-Type": "application/merge-patch+json"},
        content=json.dumps({"status": {"errorMessage": "checked"},
                            "spec": {"online": False}}))
    assert r.status_code == 200, r.text
    assert r.json()["status"]["errorMessage"] == "checked"
    assert r.json()["status"]["hardwareProfile"] == "dell"
    assert r.json()["spec"]["online"] is True and r.json()["metadata"]["generation"] == 2
    got = yaml_of(kubectl, HOST)
    assert got["status"]["hardwareProfile"] == "dell" and got["spec"]["online"] is True

    writer.start()
    # a change of the node is written over it again by metalplane, generation unchanged
    # (409 while the reconcile holds the node's lock, as Ironic answers: try again)
    wait_for(lambda: server.http.put(f"/v1/nodes/{HOST}/maintenance",
                                     json={"reason": "checked"}).status_code == 202,
             "maintenance set", timeout=60)
    fresh = wait_for(lambda: (d := httpx.get(f"{base}{HOSTS}/{HOST}").json())["status"].get(
        "operationalStatus") == "detached" and d, "status rewritten from the node", timeout=30)
    assert fresh["status"]["hardwareProfile"] == "unknown"
    assert "errorMessage" not in fresh["status"] or fresh["status"]["errorMessage"] != "checked"
    assert fresh["metadata"]["generation"] == 2
    r = httpx.get(f"{base}{HOSTS}/nope/status")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"


def yaml_of(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", "bmh", name, "-o", "json").stdout))


def test_a_server_stop_ends_open_watches_at_once(tmp_path: Path) -> None:
    watches: list[Background] = []
    try:
        with running_server(tmp_path / "data") as server:
            watches = [Background(f"{server.k8s_url}{HOSTS}?watch=true"),  # 30 min or more
                       Background(f"{server.k8s_url}/api/v1/namespaces?watch=true")]
            wait_for(lambda: server.service.kube.hub.stats()["watchers"] == 2
                     and len(watches[1].events) == 2, "two watchers")
            assert [e["object"]["metadata"]["name"] for e in watches[1].events] == [
                "default", "kube-system"]
            started = time.monotonic()
        took = time.monotonic() - started  # running_server's exit: should_exit, join, stop
        for w in watches:
            w.thread.join(timeout=5)
            assert not w.thread.is_alive() and w.error is None
        assert took < 3, f"stopping took {took:.1f}s with open watches"  # uvicorn waits 5
    finally:
        for w in watches:
            w.close()


def test_sigterm_stops_a_server_process_with_open_watches_at_once(tmp_path: Path) -> None:
    """The real signal path: uvicorn's SIGTERM handler sets ``should_exit`` on the event
    loop's thread, whose hook closes the hub (it must take no lock there)."""
    port, network_port, k8s_port = distinct_free_ports(3)
    env = {**os.environ, "METALPLANE_DATA_DIR": str(tmp_path / "data"),
           "METALPLANE_NETWORK_PORT": str(network_port), "METALPLANE_K8S_PORT": str(k8s_port),
           "METALPLANE_BOOT_LISTEN": ""}
    log = tmp_path / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "metalplane.cli.main", "server",
                                 "--port", str(port)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    watches: list[Background] = []
    try:
        wait_http(f"http://127.0.0.1:{k8s_port}/version", proc, log, "server")
        url = f"http://127.0.0.1:{k8s_port}"
        watches = [Background(f"{url}/api/v1/namespaces?watch=true"),
                   Background(f"{url}{HOSTS}?watch=true&resourceVersion=0")]
        wait_for(lambda: len(watches[0].events) == 2, "the namespaces' ADDED events")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        took = time.monotonic() - started
        for w in watches:
            w.thread.join(timeout=5)
            assert not w.thread.is_alive()
        assert took < 4, f"SIGTERM took {took:.1f}s with open watches (uvicorn waits 5)"
        assert proc.returncode == 0, log.read_text()[-2000:]
    finally:
        for w in watches:
            w.close()
        stop_process(proc)
