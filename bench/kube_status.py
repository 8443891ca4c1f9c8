"""The BareMetalHost status writer with many hosts: what one pass costs, and how long a
node's change takes to reach the host's stored status (what a watch then sees).

A SQLite store in a temporary directory holds ``--hosts`` nodes and as many
BareMetalHosts (rows written directly, no BMC). The writer is
:class:`metalplane.conductor.kube_status.StatusWriter`, the status is Metal3's
(:func:`metalplane.common.metal3.host_status`), and the watch hub listens as in a server.
Measured, as wall time on this process:

1. the first pass, which fills every host's empty status (one write of them all);
2. a pass when nothing changed (the steady state: two aggregate queries);
3. a pass after ``1`` and after ``--changed`` nodes changed state (the other nodes
   written longer ago than the writer's clock margin);
4. freshness: a node's state changed through ``metalplane.db.api.update_node`` (as the
   conductor does) while the writer's thread runs, until the host's stored status shows
   it, ``--samples`` times.

Prints the machine, parameters and figures; writes ``bench/results/kube_status.json``.
Run: ``.venv/bin/python bench/kube_status.py [--hosts 10000]`` (about 30 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench._common import RESULTS, header, machine, ms_summary, write_result  # noqa: E402
from metalplane import __version__  # noqa: E402
from metalplane.common.metal3 import host_status  # noqa: E402
from metalplane.conductor.kube_status import StatusWriter  # noqa: E402
from metalplane.conductor.kube_watch import WatchHub  # noqa: E402
from metalplane.db import api as db_api  # noqa: E402
from metalplane.db.engine import Database  # noqa: E402
from metalplane.db.kube import kube_by_ids, kube_stamps  # noqa: E402
from metalplane.db.models import KubeObject, KubeRevision, Node  # noqa: E402


def compute(obj: KubeObject, node: Node | None) -> dict[str, Any]:
    spec = (obj.body or {}).get("spec") or {}
    if node is None:
        return {"operationalStatus": "error", "errorType": "registration error"}
    return host_status(node, spec, obj.namespace)


def populate(db: Database, count: int) -> None:
    now = dt.datetime.now(dt.UTC)
    nodes = [{"uuid": str(uuidlib.uuid4()), "name": f"host-{i}", "driver": "fake-hardware",
              "provision_state": "available", "power_state": "power off",
              "created_at": now, "updated_at": now, "driver_info": {}, "properties": {},
              "instance_info": {}, "extra": {}, "driver_internal_info": {}, "traits": [],
              "maintenance": False, "conductor_group": ""} for i in range(count)]
    hosts = [{"kind": "BareMetalHost", "namespace": "default", "name": f"host-{i}",
              "uid": str(uuidlib.uuid4()), "resource_version": i + 1, "generation": 1,
              "created_at": now, "labels": {}, "annotations": {}, "finalizers": [],
              "body": {"spec": {"online": True, "bmc": {
                  "address": f"redfish://10.0.{i // 250}.{i % 250}/redfish/v1/Systems/1",
                  "credentialsName": f"host-{i}-bmc"}}},
              "status": {}, "node_uuid": n["uuid"]} for i, n in enumerate(nodes)]
    with db.transaction() as conn:
        conn.execute(sa.insert(Node.__table__), nodes)
        conn.execute(sa.insert(KubeObject.__table__), hosts)
        conn.execute(sa.update(KubeRevision.__table__).values(value=count))


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def change(db: Database, nodes: list[Node], state: str) -> None:
    for node in nodes:
        db_api.update_node(db, node.id, {"provision_state": state})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "kube_status.json")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "script": "bench/kube_status.py", "machine": machine(),
        "versions": {"metalplane": __version__, "sqlalchemy": sa.__version__},
        "parameters": {"hosts": args.hosts, "changed": args.changed,
                       "samples": args.samples}}
    header(result)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/store.db")
        db.upgrade()
        populate(db, args.hosts)
        hub = WatchHub(db)
        hub.start()
        writer = StatusWriter(db, "BareMetalHost", compute)
        first, written = timed(writer.write_pass)
        assert written == args.hosts, written
        # the nodes were all written just now: a pass would re-read every one within
        # the writer's clock margin (what a pass right after an import of 10,000 costs)
        time.sleep(writer.clock_margin + 0.5)
        idle = [timed(writer.write_pass)[0] for _ in range(args.samples)]
        nodes = db_api.rows_where(db, Node, order_by=("id",))
        one, many = [], []
        for i in range(5):
            change(db, nodes[:1], "manageable" if i % 2 == 0 else "available")
            seconds, written = timed(writer.write_pass)
            assert written == 1
            one.append(seconds)
            change(db, nodes[:args.changed], "cleaning" if i % 2 == 0 else "available")
            seconds, written = timed(writer.write_pass)
            assert written >= args.changed - 1
            many.append(seconds)

        writer.start()
        target = kube_by_ids(db, [kube_stamps(db, "BareMetalHost")[-1][0]])[0]
        node = next(n for n in nodes if n.uuid == target.node_uuid)
        fresh = []
        for i in range(args.samples):
            state = ("available", "manageable")[i % 2]
            want = "preparing" if state == "manageable" else "available"
            started = time.perf_counter()
            db_api.update_node(db, node.id, {"provision_state": state})
            deadline = started + 10
            while time.perf_counter() < deadline:
                got = kube_by_ids(db, [target.id])[0].status["provisioning"]["state"]
                if got == want:
                    break
                time.sleep(0.002)
            else:
                raise SystemExit(f"status still {got!r} after 10 s")
            fresh.append(time.perf_counter() - started)
            time.sleep(0.05)
        writer.stop()
        hub.stop()
        db.dispose()

    result["figures"] = {
        "first_pass_fills_all_ms": round(first * 1000, 1),
        "pass_nothing_changed": ms_summary(idle),
        "pass_one_changed": ms_summary(one),
        f"pass_{args.changed}_changed": ms_summary(many),
        "node_change_to_stored_status": ms_summary(fresh),
    }
    for key, value in result["figures"].items():
        print(f"{key}: {value}")
    print(f"mean idle pass {statistics.mean(idle) * 1000:.1f} ms for {args.hosts} hosts")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
