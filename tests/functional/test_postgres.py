"""Two conductors sharing one real PostgreSQL store."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalplane.db import api as db_api
from tests.helpers.peers import postgres_server
from tests.helpers.server import running_server

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_two_conductors_share_nodes_and_locks(tmp_path: Path, pg_url: str) -> None:
    # both need the same secret key to read each other's BMC passwords
    shared = tmp_path / "shared"
    with running_server(shared, database_url=pg_url, conductor_hostname="cond-a") as a, \
            running_server(shared, database_url=pg_url, conductor_hostname="cond-b") as b:
        node = a.create_node(name="pg-1", driver_info={"fake_password": "pgpw"})
        assert b.node("pg-1")["uuid"] == node["uuid"]
        with a.conductor.acquire("pg-1", "firmware update"):
            r = b.provision("pg-1", "manage")
            assert r.status_code == 409
            assert "locked by host cond-a for firmware update" in json.loads(
                r.json()["error_message"])["faultstring"]
        assert b.provision("pg-1", "manage").status_code == 202
        b.wait_state("pg-1", "manageable")

        for i in range(40):
            a.create_node(name=f"pg-n{i}")
        # each conductor drives half; every node ends active, none locked
        for verb, state in (("manage", "manageable"), ("provide", "available"),
                            ("deploy", "active")):
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(
                    lambda i, v=verb: (a if i % 2 else b).provision(f"pg-n{i}", v).status_code,
                    range(40)))
            assert codes == [202] * 40
            for i in range(40):
                a.wait_state(f"pg-n{i}", state)
        assert db_api.nodes_reserved_by(a.service.db, ["cond-a", "cond-b"]) == []


def test_a_dead_conductors_locks_are_recovered_by_another(tmp_path: Path, pg_url: str) -> None:
    shared = tmp_path / "shared"
    with running_server(shared, database_url=pg_url, conductor_hostname="cond-c",
                        heartbeat_timeout=2) as c:
        c.create_node(name="orphan")
        db = c.service.db
        node = db_api.list_nodes(db, {"name": "orphan"})[0]
        db_api.update_node(db, node.id, {"provision_state": "cleaning",
                                         "reservation": "cond-dead",
                                         "reservation_purpose": "provision action 'provide'"})
        db_api.register_conductor(db, "cond-dead", "", [])
        time.sleep(2.5)  # cond-dead's heartbeat goes stale
        c.conductor._recover_dead()
        assert c.node("orphan")["provision_state"] == "clean failed"
        recovered = c.wait_state("orphan", "clean failed", timeout=10)  # made safe, released
        assert recovered["power_state"] == "power off"
        assert "cond-dead stopped heartbeating" in recovered["last_error"]
