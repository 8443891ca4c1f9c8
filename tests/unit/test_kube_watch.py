"""The watch hub, the kube_objects write hook and the status writer, on a SQLite store in
a temporary directory (no server): versions and generations, the order and shape of the
changes, a history that forgets, and a writer that writes only what changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metalplane.conductor.kube_status import StatusWriter, same_status
from metalplane.conductor.kube_watch import TooOld, WatchHub
from metalplane.db import api as db_api
from metalplane.db.engine import Database
from metalplane.db.kube import (
    TOPIC,
    KubeChange,
    kube_create,
    kube_delete,
    kube_get,
    kube_set_statuses,
    kube_update,
)
from metalplane.db.listeners import listen
from metalplane.db.models import KubeObject, Node


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = Database(f"sqlite:///{tmp_path}/store.db")
    store.upgrade()
    yield store
    store.dispose()


def test_every_write_is_announced_in_order_and_status_leaves_generation(db: Database
                                                                        ) -> None:
    seen: list[KubeChange] = []
    remove = listen(db, TOPIC, seen.append)
    obj = kube_create(db, "Widget", "default", "a", labels={"x": "1"}, body={"spec": 1})
    kube_update(db, "Widget", "default", "a", None, labels={"x": "2"})
    kube_set_statuses(db, {obj.id: {"state": "ready"}})
    kube_update(db, "Widget", "default", "a", None, body={"spec": 2})
    gone = kube_delete(db, "Widget", "default", "a")
    remove()
    kube_create(db, "Widget", "default", "b")  # no longer heard
    assert [c.type for c in seen] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]
    versions = [c.obj.resource_version for c in seen]
    assert versions == sorted(versions) and len(set(versions)) == 5
    assert [c.obj.generation for c in seen] == [1, 1, 1, 2, 2]  # labels, status: no
    assert seen[1].prev_labels == {"x": "1"} and seen[1].obj.labels == {"x": "2"}
    assert seen[2].obj.status == {"state": "ready"} and seen[3].obj.status == {"state": "ready"}
    assert gone.resource_version == versions[-1]  # a deletion takes a version of its own


def test_the_hub_keeps_each_kinds_recent_changes_then_says_too_old(db: Database) -> None:
    kube_create(db, "Widget", "default", "before")  # before the hub: too old for it
    hub = WatchHub(db, capacity=3)
    hub.start()
    start = hub.revision
    for i in range(4):
        kube_create(db, "Widget", "default", f"w{i}")
    kube_create(db, "Gadget", "default", "g")
    assert [c.obj.name for c in hub.changes_after("Widget", start)] == ["w0", "w1", "w2", "w3"]
    assert [c.obj.name for c in hub.changes_after("Gadget", start)] == ["g"]
    assert hub.changes_after("Sprocket", start) == []
    assert start == 1
    with pytest.raises(TooOld, match=r"^too old resource version: 0 \(1\)$"):
        hub.changes_after("Widget", 0)
    w3 = hub.changes_after("Widget", start)[-1].obj.resource_version
    for i in range(4, 7):  # past twice the capacity: the oldest are forgotten
        kube_create(db, "Widget", "default", f"w{i}")
    assert [c.obj.name for c in hub.changes_after("Widget", w3)] == ["w4", "w5", "w6"]
    with pytest.raises(TooOld) as too_old:
        hub.changes_after("Widget", w3 - 1)
    assert too_old.value.oldest == w3
    assert [c.obj.name for c in hub.changes_after("Gadget", start)] == ["g"]  # its own
    hub.stop()
    kube_create(db, "Widget", "default", "after")
    assert "after" not in [c.obj.name for c in hub.changes_after("Widget", too_old.value.oldest)]


def test_a_watcher_waits_without_a_thread_and_wakes_on_a_change_or_close(db: Database
                                                                         ) -> None:
    hub = WatchHub(db)
    hub.start()

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        watcher = hub.subscribe()
        woke = []
        started = time.monotonic()
        await watcher.wait(0.05)  # nothing: the timeout
        woke.append(f"timeout {time.monotonic() - started >= 0.04}")
        loop.call_later(0.05, lambda: loop.run_in_executor(
            None, lambda: kube_create(db, "Widget", "default", "x")))
        started = time.monotonic()
        await watcher.wait(10)
        woke.append(f"change {time.monotonic() - started < 5}")
        loop.call_later(0.05, hub.close)
        started = time.monotonic()
        await watcher.wait(10)
        woke.append(f"close {time.monotonic() - started < 5} {hub.closed}")
        hub.unsubscribe(watcher)
        return woke

    assert asyncio.run(scenario()) == ["timeout True", "change True", "close True True"]
    assert hub.stats()["watchers"] == 0
    hub.stop()


def _node(db: Database, uuid: str, state: str = "enroll") -> Node:
    return db_api.create_node(db, {"uuid": uuid, "name": uuid[:8], "driver": "fake-hardware",
                                   "provision_state": state})


def _compute(obj: KubeObject, node: Node | None) -> dict[str, Any]:
    if node is None:
        return {"state": "gone"}
    return {"state": node.provision_state, "spec": (obj.body or {}).get("spec"),
            "lastUpdated": "node's clock"}


def test_the_status_writer_writes_what_changed_and_only_that(db: Database) -> None:
    nodes = [_node(db, f"0000000{i}-0000-0000-0000-000000000000") for i in range(3)]
    hosts = [kube_create(db, "BareMetalHost", "default", f"h{i}", node_uuid=n.uuid,
                         body={"spec": i}) for i, n in enumerate(nodes)]
    seen: list[KubeChange] = []
    listen(db, TOPIC, seen.append)
    writer = StatusWriter(db, "BareMetalHost", _compute)
    assert writer.write_pass() == 3  # the first pass fills every status
    assert writer.write_pass() == 0  # nothing moved
    first = kube_get(db, "BareMetalHost", "default", "h0")
    assert first.status["state"] == "enroll" and first.generation == 1
    assert first.status["lastUpdated"] != "node's clock"  # the time of the write

    db_api.update_node(db, nodes[0].id, {"provision_state": "manageable"})
    db_api.update_node(db, nodes[1].id, {"description": "no status in it"})
    seen.clear()
    assert writer.write_pass() == 1
    assert [(c.type, c.obj.name, c.obj.status["state"]) for c in seen] == [
        ("MODIFIED", "h0", "manageable")]
    h1 = kube_get(db, "BareMetalHost", "default", "h1")  # its node moved, its status not
    assert h1.status["state"] == "enroll" and h1.resource_version < seen[0].obj.resource_version

    kube_update(db, "BareMetalHost", "default", "h2", None, body={"spec": "new"})
    assert writer.write_pass() == 1  # a spec change is looked at too
    assert kube_get(db, "BareMetalHost", "default", "h2").status["spec"] == "new"
    assert kube_get(db, "BareMetalHost", "default", "h2").generation == 2

    db_api.destroy_node(db, nodes[1].id)  # a deletion: every row read again
    assert writer.write_pass() == 1
    assert kube_get(db, "BareMetalHost", "default", "h1").status["state"] == "gone"
    assert all(kube_get(db, "BareMetalHost", "default", h.name).generation <= 2
               for h in hosts)


def test_the_writer_thread_follows_a_node_change_at_once_and_fill_writes_once(
        db: Database) -> None:
    node = _node(db, "00000009-0000-0000-0000-000000000000")
    host = kube_create(db, "BareMetalHost", "default", "h", node_uuid=node.uuid)
    writer = StatusWriter(db, "BareMetalHost", _compute, interval=30)  # only kicks
    [filled] = writer.fill([host])
    assert filled.status["state"] == "enroll" and filled.resource_version > \
        host.resource_version
    assert writer.fill([filled]) == [filled]  # already there: nothing written
    writer.start()
    try:
        time.sleep(0.3)  # the first pass
        db_api.update_node(db, node.id, {"provision_state": "manageable"})
        deadline = time.monotonic() + 5
        while kube_get(db, "BareMetalHost", "default", "h").status["state"] != "manageable":
            assert time.monotonic() < deadline, "the node's change was not written"
            time.sleep(0.01)
        assert time.monotonic() - (deadline - 5) < 1
    finally:
        writer.stop()


def test_every_state_a_node_passes_between_two_passes_is_shown_in_order(db: Database
                                                                        ) -> None:
    node = _node(db, "00000007-0000-0000-0000-000000000000")
    kube_create(db, "BareMetalHost", "default", "h", node_uuid=node.uuid)
    writer = StatusWriter(db, "BareMetalHost", _compute)
    listen(db, db_api.NODES_TOPIC, writer.node_changed)  # as start() does
    assert writer.write_pass() == 1
    states = ["verifying", "manageable", "inspecting", "inspect wait", "manageable",
              "cleaning", "clean wait", "available"]
    for state in states:  # faster than any pass
        db_api.update_node(db, node.id, {"provision_state": state})
    db_api.update_node(db, node.id, {"power_state": "power off"})  # not a state: nothing
    seen: list[KubeChange] = []
    listen(db, TOPIC, seen.append)
    for _ in range(3 * len(states)):
        if not writer.write_pass():
            break
    assert [c.obj.status["state"] for c in seen] == states
    assert writer.write_pass() == 0


def test_same_status_ignores_last_updated() -> None:
    assert same_status({"a": 1, "lastUpdated": "x"}, {"a": 1, "lastUpdated": "y"})
    assert not same_status({"a": 1}, {"a": 2})
    assert same_status(None, {})
