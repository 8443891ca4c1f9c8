"""The metalplane command, run as a user runs it, against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.helpers.peers import free_port
from tests.helpers.server import RunningServer, running_server


def run(*args: str, url: str | None = None, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = [sys.executable, "-m", "metalplane.cli.main"]
    if url:
        base += ["--url", url]
    import os
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120,
                          input=stdin, env={**os.environ, **(env or {})})


def assert_one_line_error(r: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert fragment in lines[0], r.stderr


def test_help_lists_the_verbs() -> None:
    r = run("node", "--help")
    assert r.returncode == 0
    for verb in ("create", "list", "show", "set", "delete", "manage", "inspect", "provide",
                 "deploy", "undeploy", "power"):
        assert verb in r.stdout


def test_node_walkthrough_with_output_formats(server: RunningServer) -> None:
    r = run("node", "create", "--driver", "fake-hardware", "--name", "c1", "--property",
            "cpus=8", "-o", "json", url=server.url)
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["properties"] == {"cpus": 8} and created["provision_state"] == "enroll"
    for verb in ("manage", "provide", "deploy"):
        r = run("node", verb, "c1", "--wait", url=server.url)
        assert r.returncode == 0, r.stderr
    r = run("node", "list", "-o", "yaml", url=server.url)
    listed = yaml.safe_load(r.stdout)
    assert [(n["name"], n["provision_state"]) for n in listed] == [("c1", "active")]
    r = run("node", "list", url=server.url)
    assert "c1" in r.stdout and "active" in r.stdout
    r = run("node", "set", "c1", "--extra", "rack=r7", "-o", "json", url=server.url)
    assert json.loads(r.stdout)["extra"] == {"rack": "r7"}
    r = run("port", "create", "52:54:00:00:00:01", "--node", "c1",
            "--local-link-connection", "switch_id=aa:bb:cc:dd:ee:ff",
            "--local-link-connection", "port_id=p1", "-o", "json", url=server.url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["local_link_connection"] == {
        "switch_id": "aa:bb:cc:dd:ee:ff", "port_id": "p1"}
    r = run("port", "list", "--node", "c1", "-o", "json", url=server.url)
    assert [p["address"] for p in json.loads(r.stdout)] == ["52:54:00:00:00:01"]
    r = run("node", "power", "off", "c1", "--wait", url=server.url)
    assert r.returncode == 0, r.stderr
    assert server.node("c1")["power_state"] == "power off"


def test_errors_are_one_line(server: RunningServer) -> None:
    assert_one_line_error(run("node", "show", "missing", url=server.url),
                          "Node missing could not be found")
    assert_one_line_error(run("node", "create", "--bmc-address", "gopher://x", url=server.url),
                          "must start with one of")
    assert_one_line_error(run("node", "create", "--bmc-address", "ipmi://10.1.1.1:623",
                              "--bmc-username", "admin", url=server.url),
                          "password is required")
    assert_one_line_error(run("node", "create", "--driver", "nope", url=server.url),
                          "Cannot find the hardware type 'nope'")
    server.create_node(name="e1")
    assert_one_line_error(run("node", "deploy", "e1", url=server.url),
                          "Allowed verbs in 'enroll': manage")
    assert_one_line_error(run("port", "create", "zz:zz", "--node", "e1", url=server.url),
                          "not a valid MAC")
    assert_one_line_error(run("node", "list", "-o", "xml", url=server.url), "--output")
    assert_one_line_error(run("node", "list", url=f"http://127.0.0.1:{free_port()}"),
                          "cannot reach metalplane")
    assert server.http.get("/v1/ports").json()["ports"] == []


def test_manual_cleaning_and_the_steps(server: RunningServer, tmp_path: Path) -> None:
    assert run("node", "create", "--driver", "fake-hardware", "--name", "mc",
               url=server.url).returncode == 0
    r = run("node", "steps", "mc", url=server.url)
    assert r.returncode == 0, r.stderr
    assert "bios.apply_configuration" in r.stdout and "settings" in r.stdout
    listed = json.loads(run("node", "steps", "mc", "-o", "json", url=server.url).stdout)
    assert listed["clean_steps"][0]["step"] == "erase_devices"
    assert run("node", "manage", "mc", "--wait", url=server.url).returncode == 0
    assert_one_line_error(run("node", "clean", "mc", url=server.url), "--clean-steps")
    assert_one_line_error(run("node", "clean", "mc", "--clean-steps", "[{", url=server.url),
                          "not valid JSON")
    steps = [{"interface": "bios", "step": "apply_configuration",
              "args": {"settings": [{"name": "cpu_vt_enabled", "value": "True"}]}}]
    path = tmp_path / "steps.json"
    path.write_text(json.dumps(steps))
    r = run("node", "clean", "mc", "--clean-steps", str(path), "--wait", url=server.url)
    assert r.returncode == 0, r.stderr
    node = server.node("mc")
    assert node["provision_state"] == "manageable"
    assert node["driver_internal_info"]["fake_bios_settings"] == {"cpu_vt_enabled": "True"}
    r = run("node", "clean", "mc", "--clean-steps", "-", "--wait", url=server.url,
            stdin=json.dumps([{"interface": "bios", "step": "factory_reset"}]))
    assert r.returncode == 0, r.stderr
    assert "fake_bios_settings" not in server.node("mc")["driver_internal_info"]


def test_wait_reports_a_failed_node(server: RunningServer) -> None:
    server.create_node(name="f1", driver="redfish",
                       driver_info={"redfish_address": "http://127.0.0.1:9"})
    r = run("node", "power", "on", "f1", "--wait", url=server.url)
    assert_one_line_error(r, "127.0.0.1:9")


def test_http_basic_with_users_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = run("user", "add", "ops", "--password-stdin", "--data-dir", str(data),
            stdin="correct horse\n")
    assert r.returncode == 0, r.stderr
    text = (data / "htpasswd").read_text()
    assert text.startswith("ops:$2") and "correct horse" not in text
    with running_server(data, auth_strategy="http_basic") as server:
        anon = httpx.get(f"{server.url}/v1/nodes")
        assert anon.status_code == 401
        assert anon.headers["WWW-Authenticate"].startswith("Basic")
        assert httpx.get(f"{server.url}/v1").status_code == 200  # discovery stays open
        bad = httpx.get(f"{server.url}/v1/nodes", auth=("ops", "wrong"))
        assert bad.status_code == 401
        assert httpx.get(f"{server.url}/v1/nodes", auth=("ops", "correct horse")).status_code \
            == 200
        r = run("node", "list", url=server.url,
                env={"METALPLANE_USERNAME": "ops", "METALPLANE_PASSWORD": "correct horse"})
        assert r.returncode == 0, r.stderr
        assert_one_line_error(run("node", "list", url=server.url), "Authentication required")


def test_server_refuses_http_basic_without_users_file(tmp_path: Path) -> None:
    r = run("server", "--data-dir", str(tmp_path), "--auth-strategy", "http_basic",
            "--port", str(free_port()))
    assert_one_line_error(r, "metalplane user add")
