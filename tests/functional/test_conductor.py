"""The conductor: concurrency, locks, wait-state timeouts, recovery of orphaned nodes."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

from metalplane.db import api as db_api
from metalplane.db.models import utcnow
from metalplane.drivers.modules import fake
from metalplane.lifecycle import states
from tests.helpers.server import running_server


def test_a_thousand_nodes_do_not_queue_behind_one_another(tmp_path: Path) -> None:
    """Each deploy takes 1.5 s in the fake driver; with 1000 nodes the work must overlap up
    to the worker pool's size, not run one node after another (serial would be 1)."""
    with running_server(tmp_path / "d", workers=100,
                        fake_delays={"deploy": 1.5}) as server:
        db = server.service.db
        for i in range(1000):
            db_api.create_node(db, {"driver": "fake-hardware", "name": f"n{i}",
                                    "provision_state": states.AVAILABLE,
                                    "conductor_group": "", "power_state": "power off"})
        fake.STATS.reset()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda i: server.provision(f"n{i}", "deploy").status_code,
                                  range(1000)))
        assert codes == [202] * 1000
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            active = db_api.list_nodes(db, {"provision_state": "active"})
            if len(active) == 1000:
                break
            time.sleep(0.5)
        assert len(db_api.list_nodes(db, {"provision_state": "active"})) == 1000
        assert db_api.nodes_reserved_by(db, ["test-conductor"]) == []
        assert fake.STATS.peak >= 60, f"at most {fake.STATS.peak} deploys ran at once"


def test_wait_state_timeout_fails_the_node(tmp_path: Path) -> None:
    with running_server(tmp_path / "d", deploy_callback_timeout=1,
                        clean_callback_timeout=1, inspect_wait_timeout=1) as server:
        db = server.service.db
        waits = {"wait call-back": "deploy failed", "clean wait": "clean failed",
                 "inspect wait": "inspect failed"}
        for i, state in enumerate(waits):
            db_api.create_node(db, {"driver": "fake-hardware", "name": f"w{i}",
                                    "provision_state": state, "conductor_group": "",
                                    "provision_updated_at": utcnow()})
        server.conductor.check_timeouts()
        assert server.node("w0")["provision_state"] == "wait call-back"  # not yet
        time.sleep(1.2)
        server.conductor.check_timeouts()
        for i, (state, failed) in enumerate(waits.items()):
            assert server.node(f"w{i}")["provision_state"] == failed
            node = server.wait_state(f"w{i}", failed, timeout=10)  # made safe on a worker
            assert "Timeout reached while waiting in state" in node["last_error"]
            assert state in node["last_error"]
            assert node["power_state"] == "power off"


def test_abort_a_wait_state(server) -> None:  # type: ignore[no-untyped-def]
    db = server.service.db
    db_api.create_node(db, {"driver": "fake-hardware", "name": "ab",
                            "provision_state": "clean wait", "conductor_group": "",
                            "target_provision_state": "available",
                            "power_state": "power off", "target_power_state": "power on"})
    assert server.provision("ab", "abort").status_code == 202
    node = server.node("ab")
    assert node["provision_state"] == "clean failed"
    assert node["target_provision_state"] is None
    assert "Aborted" in node["last_error"]
    # then made safe on a worker (powered off); the reboot into the agent is awaited by
    # nobody now: wait_state needs target_power_state null (else `--wait` would never end)
    node = server.wait_state("ab", "clean failed", timeout=10)
    assert node["power_state"] == "power off"


def test_a_reboot_into_the_agent_is_checked_once_its_time_is_up(tmp_path: Path) -> None:
    """A reboot into the agent does not wait for the power (the agent's lookup reports it);
    power_state_change_timeout after it with no agent, the BMC is asked once. The fake
    power interface reads back the node's power_state: "dark" never came on, "up" did."""
    with running_server(tmp_path / "d", power_state_change_timeout=1) as server:
        db = server.service.db
        for name, power in (("dark", "power off"), ("up", "power on")):
            db_api.create_node(db, {"driver": "fake-hardware", "name": name,
                                    "provision_state": "clean wait", "conductor_group": "",
                                    "target_provision_state": "available",
                                    "provision_updated_at": utcnow(), "power_state": power,
                                    "target_power_state": "power on"})
        server.conductor.check_timeouts()
        assert server.node("dark")["target_power_state"] == "power on"  # not yet
        time.sleep(1.2)
        server.conductor.check_timeouts()
        dark, up = server.node("dark"), server.node("up")
        assert dark["provision_state"] == "clean failed"
        dark = server.wait_state("dark", "clean failed", timeout=10)  # made safe: unlocked,
        assert "still 'power off' 1 s after the reboot" in dark["last_error"]  # no target
        assert dark["power_state"] == "power off"
        assert up["provision_state"] == "clean wait"  # on: it keeps waiting for its agent
        assert up["power_state"] == "power on" and up["target_power_state"] is None
        assert up["last_error"] is None


def test_restart_releases_locks_and_fails_transient_nodes(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with running_server(data) as server:
        db = server.service.db
        # what a conductor killed mid-work leaves behind
        for name, state in (("t-deploy", "deploying"), ("t-clean", "cleaning"),
                            ("t-wait", "wait call-back"), ("t-idle", "available")):
            node = db_api.create_node(db, {"driver": "fake-hardware", "name": name,
                                           "provision_state": state, "conductor_group": "",
                                           "provision_updated_at": utcnow()})
            if name != "t-idle":
                db_api.update_node(db, node.id, {"reservation": "test-conductor",
                                                 "reservation_purpose": "provision action"})
        # a lock held by another conductor that has died
        ghost = db_api.create_node(db, {"driver": "fake-hardware", "name": "t-ghost",
                                        "provision_state": "inspecting",
                                        "conductor_group": ""})
        db_api.register_conductor(db, "ghost-conductor", "", [])
        db_api.unregister_conductor(db, "ghost-conductor")
        db_api.update_node(db, ghost.id, {"reservation": "ghost-conductor",
                                          "reservation_purpose": "inspection"})
    with running_server(data) as server:
        assert server.node("t-deploy")["provision_state"] == "deploy failed"
        assert "did not finish" in server.node("t-deploy")["last_error"]
        assert server.node("t-clean")["provision_state"] == "clean failed"
        assert server.node("t-wait")["provision_state"] == "wait call-back"  # timeout applies
        assert server.node("t-idle")["provision_state"] == "available"
        ghost_node = server.node("t-ghost")
        assert ghost_node["provision_state"] == "inspect failed"
        assert "ghost-conductor" in ghost_node["last_error"]
        for name, failed in (("t-deploy", "deploy failed"), ("t-clean", "clean failed"),
                             ("t-ghost", "inspect failed")):  # made safe on a worker
            assert server.wait_state(name, failed, timeout=10)["power_state"] == "power off"
        for name in ("t-wait", "t-idle"):
            assert server.node(name)["reservation"] is None, name
