"""The seams on libraries' private internals (docs/benchmarks.md, "Library seams").

Each seam is kept because ``bench/internals.py`` measured a clear gain over the library's
default; each leans on how the library works inside. These tests check that behaviour
itself, so that a new version of the library that changes it fails here, naming the
library and what changed, instead of silently undoing the gain or breaking the seam. No
timings: the gains are the benchmark's."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import socket
import threading
import time
import uuid
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import ovs.db.idl
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from ovsdbapp.backend.ovs_idl import connection

from metalplane.api.agent_api import _BootFile
from metalplane.api.app import OffloadedRoute
from metalplane.api.service import Service, _Server
from metalplane.common.config import Settings
from metalplane.db import api as db_api
from metalplane.db.engine import Database
from metalplane.db.models import Node
from metalplane.network.ovs import _Idl

Message = MutableMapping[str, Any]


async def asgi_call(app: Any, method: str = "GET", path: str = "/",
                    query: bytes = b"") -> list[Message]:
    """The messages ``app`` sends for one bodiless HTTP request (a minimal ASGI call)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query, "root_path": "", "headers": [(b"host", b"localhost")],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 6385)}
    sent: list[Message] = []
    received: list[bool] = []

    async def receive() -> Message:
        if not received:  # the request, then nothing: the client waits for the answer
            received.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def status_and_body(messages: list[Message]) -> tuple[int, bytes]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return int(start["status"]), body


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("no request expected")


# ---------------------------------------------------------- uvicorn: the housekeeping tick

def test_uvicorn_server_still_has_the_tick_hooks_the_seam_overrides() -> None:
    for name in ("main_loop", "on_tick"):
        assert inspect.iscoroutinefunction(getattr(uvicorn.Server, name, None)), (
            f"uvicorn: Server.{name} is gone or no longer a coroutine function; _Server "
            "(metalplane/api/service.py) overrides main_loop and calls on_tick")
    params = list(inspect.signature(uvicorn.Server.on_tick).parameters)
    assert params == ["self", "counter"], (
        f"uvicorn: Server.on_tick now takes {params}, not (self, counter); _Server "
        "(metalplane/api/service.py) calls on_tick(counter)")


def test_uvicorn_on_tick_refreshes_the_date_on_multiples_of_ten_and_reports_exit() -> None:
    server = uvicorn.Server(uvicorn.Config(_no_app, log_config=None))

    async def ticks() -> None:
        for counter in (0, 10, 860000):
            server.server_state.default_headers = []
            assert await server.on_tick(counter) is False, (
                "uvicorn: Server.on_tick returned True with should_exit unset")
            assert b"date" in dict(server.server_state.default_headers), (
                f"uvicorn: Server.on_tick({counter}) no longer refreshes the Date header; "
                "_Server (metalplane/api/service.py) ticks with multiples of 10 only, "
                "relying on it")
        server.should_exit = True
        assert await server.on_tick(10) is True, (
            "uvicorn: Server.on_tick no longer returns True once should_exit is set; "
            "_Server's main_loop (metalplane/api/service.py) stops on that")

    asyncio.run(ticks())


def test_the_seams_main_loop_ticks_only_on_date_refreshing_counters() -> None:
    counters: list[int] = []

    class Spy(_Server):
        async def on_tick(self, counter: int) -> bool:
            counters.append(counter)
            if len(counters) == 5:
                self.should_exit = True
            return await super().on_tick(counter)

    server = Spy(uvicorn.Config(_no_app, log_config=None))
    server.tick = 0.0
    asyncio.run(asyncio.wait_for(server.main_loop(), 30))
    assert len(counters) == 5 and all(c % 10 == 0 for c in counters), (
        f"_Server's main_loop ticked with counters {counters}: on_tick refreshes the Date "
        "only on multiples of 10 (metalplane/api/service.py)")


@pytest.mark.parametrize("stop", ["should_exit", "handle_exit"])
def test_uvicorn_serve_runs_the_seams_main_loop_and_stopping_wakes_it(stop: str) -> None:
    server = _Server(uvicorn.Config(_no_app, log_config=None, lifespan="off"))
    server.tick = 3600.0  # only the seam's wake-up can stop it within the wait below
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "uvicorn: Server.run did not start on the given socket"
        deadline = time.monotonic() + 30
        while server._wake is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server._wake is not None, (
            "uvicorn: Server.serve no longer awaits self.main_loop(); _Server's slower tick "
            "(metalplane/api/service.py) is bypassed")
        assert b"date" in dict(server.server_state.default_headers), (
            "uvicorn: no Date header after the first on_tick of _Server's main_loop")
    finally:
        if stop == "should_exit":
            server.should_exit = True  # what Service.serve's SIGTERM handler does
        else:
            server.handle_exit(15, None)  # uvicorn's own signal handler (SIGTERM)
        thread.join(timeout=20)
        sock.close()
    assert not thread.is_alive(), (
        f"uvicorn: stopping through {stop} did not wake _Server's main_loop "
        "(metalplane/api/service.py): uvicorn no longer sets should_exit as an attribute")


# --------------------------------------------------------------- FastAPI: the route class

def offloaded_app(seen: dict[str, Any]) -> FastAPI:
    app = FastAPI()
    app.router.route_class = OffloadedRoute
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")

    @app.middleware("http")
    async def tag(request: Any, call_next: Any) -> Any:
        request_id.set("req-1")
        return await call_next(request)

    @app.get("/things/{ident}")
    def thing(ident: str, n: int = 1) -> dict[str, Any]:
        seen["thread"] = threading.current_thread()
        seen["request_id"] = request_id.get(None)
        return {"ident": ident, "n": n}

    return app


def test_fastapi_reads_an_offloaded_endpoints_parameters_through_wrapped() -> None:
    seen: dict[str, Any] = {}
    app = offloaded_app(seen)
    route = next(r for r in app.routes if getattr(r, "path", "") == "/things/{ident}")
    assert isinstance(route, OffloadedRoute)
    assert inspect.iscoroutinefunction(route.endpoint)
    params = app.openapi()["paths"]["/things/{ident}"]["get"].get("parameters", [])
    names = sorted(p["name"] for p in params)
    assert names == ["ident", "n"], (
        f"FastAPI: an OffloadedRoute endpoint's parameters are now {names}: FastAPI no "
        "longer reads an endpoint's signature through __wrapped__, and the async wrapper "
        "of OffloadedRoute (metalplane/api/app.py) hides the real parameters")
    status, body = status_and_body(asyncio.run(
        asgi_call(app, path="/things/abc", query=b"n=3")))
    assert (status, body) == (200, b'{"ident":"abc","n":3}'), (
        f"FastAPI: an OffloadedRoute endpoint answered {status} {body!r}")


def test_fastapi_awaits_the_offloaded_endpoint_which_runs_on_the_executor() -> None:
    seen: dict[str, Any] = {}
    app = offloaded_app(seen)

    async def call() -> tuple[threading.Thread, list[Message]]:
        return threading.current_thread(), await asgi_call(app, path="/things/x")

    loop_thread, messages = asyncio.run(call())
    status, body = status_and_body(messages)
    assert status == 200, body
    ran = seen["thread"]
    assert ran is not loop_thread, "a def endpoint ran on the event loop's thread"
    assert ran.name.startswith("api"), (
        f"FastAPI: the def endpoint ran on thread {ran.name!r}, not on OffloadedRoute's "
        "executor (threads 'api_*'): FastAPI no longer awaits an endpoint that is a "
        "coroutine function on the loop, so the seam (metalplane/api/app.py) now adds a hop")
    assert seen["request_id"] == "req-1", "the endpoint did not run in the request's context"


def test_the_apps_def_endpoints_run_on_the_executor(tmp_path: Path) -> None:
    svc = Service(Settings(data_dir=tmp_path, auth_strategy="noauth",
                           conductor_hostname="seams"))
    svc.db.upgrade()
    threads: list[str] = []
    read = svc.db.read

    def recording_read() -> Any:
        threads.append(threading.current_thread().name)
        return read()

    svc.db.read = recording_read  # type: ignore[method-assign]
    try:
        plain = [r.path for r in svc.app.routes
                 if isinstance(r, APIRoute) and not isinstance(r, OffloadedRoute)]
        assert not plain, (
            f"{len(plain)} routes of create_app's app are not OffloadedRoute ones (first: "
            f"{plain[:3]}); the app "
            "no longer sets it as its router's route_class (metalplane/api/app.py)")
        status, body = status_and_body(asyncio.run(asgi_call(svc.app, path="/v1/nodes")))
        assert status == 200, body
    finally:
        svc.db.dispose()
    assert threads and all(t.startswith("api") for t in threads), (
        f"FastAPI: GET /v1/nodes read the store on threads {threads}, not on "
        "OffloadedRoute's executor (metalplane/api/app.py)")


# ---------------------------------------------------------- Starlette: the file chunk size

def test_starlette_file_response_sends_chunk_size_pieces(tmp_path: Path) -> None:
    data = bytes(range(256)) * (3 << 12)  # 3 MiB
    path = tmp_path / "image.raw"
    path.write_bytes(data)
    messages = asyncio.run(asgi_call(_BootFile(path, media_type="application/octet-stream")))
    status, body = status_and_body(messages)
    assert status == 200 and body == data
    pieces = [len(m["body"]) for m in messages
              if m["type"] == "http.response.body" and m.get("body")]
    assert pieces == [1 << 20] * 3, (
        f"Starlette: FileResponse sent a 3 MiB file in {len(pieces)} pieces "
        f"({sorted(set(pieces))} bytes), not in chunk_size ones (1 MiB): it no longer reads "
        "self.chunk_size, and _BootFile (metalplane/api/agent_api.py) does nothing")
    assert _BootFile.chunk_size > FileResponse.chunk_size, (
        f"Starlette: FileResponse.chunk_size is now {FileResponse.chunk_size}, at least "
        "_BootFile's: measure again (bench/internals.py) and drop the seam")


# ------------------------------------------------------- ovsdbapp: the per-row sleep

_SCHEMA = {"name": "Seams", "version": "1.0.0",
           "tables": {"Port": {"columns": {"name": {"type": "string"}}}}}


def _parse_rows(idl: Any, rows: int) -> None:
    """Feed ``idl`` an update2 of ``rows`` new rows, as the ``ovs`` IDL's ``run()`` does
    with a notification from the server."""
    parse = getattr(idl, "_Idl__parse_update", None)
    assert parse is not None, (
        "ovs: ovs.db.idl.Idl has no __parse_update any more: check that it still calls "
        "cooperative_yield() per row of an update (_Idl, metalplane/network/ovs.py)")
    parse({"Port": {str(uuid.uuid4()): {"insert": {"name": f"p{i}"}} for i in range(rows)}},
          "update2")
    assert len(idl.tables["Port"].rows) == rows, "ovs: the update was not applied"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    calls: list[float] = []
    monkeypatch.setattr(connection.time, "sleep", calls.append)
    yield calls


def _idl(cls: type[Any]) -> Any:
    helper = ovs.db.idl.SchemaHelper(schema_json=_SCHEMA)
    helper.register_all()
    return cls("unix:/nonexistent/db.sock", helper)  # never connected


def test_ovsdbapp_still_sleeps_per_row_in_cooperative_yield(sleeps: list[float]) -> None:
    assert "cooperative_yield" in vars(connection.OvsdbIdl), (
        "ovsdbapp: OvsdbIdl no longer defines cooperative_yield; _Idl "
        "(metalplane/network/ovs.py) overrides nothing: measure again and drop it")
    assert "cooperative_yield" in vars(ovs.db.idl.Idl), (
        "ovs: ovs.db.idl.Idl no longer has the cooperative_yield hook")
    idl = _idl(connection.OvsdbIdl)
    try:
        _parse_rows(idl, 3)
    finally:
        idl.close()
    assert sleeps == [0, 0, 0], (
        f"ovsdbapp/ovs: an update of 3 rows slept {sleeps} in ovsdbapp's IDL, not once per "
        "row: the per-row cooperative_yield that _Idl (metalplane/network/ovs.py) removes "
        "has changed")


def test_ovs_idl_calls_cooperative_yield_per_row_and_the_seam_does_not_sleep(
        sleeps: list[float]) -> None:
    yields: list[int] = []

    class Counting(_Idl):  # type: ignore[misc]
        def cooperative_yield(self) -> None:
            yields.append(1)
            super().cooperative_yield()

    idl = _idl(Counting)
    try:
        _parse_rows(idl, 3)
    finally:
        idl.close()
    assert len(yields) == 3, (
        f"ovs: ovs.db.idl.Idl called cooperative_yield {len(yields)} times for an update "
        "of 3 rows, not once per row (the hook _Idl, metalplane/network/ovs.py, overrides)")
    assert sleeps == [], f"_Idl still sleeps: {sleeps}"


# ------------------------------------------------------- SQLAlchemy: detached objects

@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'seams.sqlite'}")
    database.upgrade()
    yield database
    database.dispose()


def test_detached_objects_are_as_session_loaded_ones(db: Database) -> None:
    node = db_api.create_node(db, {"name": "n1", "driver": "fake-hardware",
                                   "provision_state": "enroll",
                                   "driver_info": {"a": 1}, "traits": ["T"]})
    assert sa.inspect(Node).class_manager.new_instance is not None
    state = sa.inspect(node)
    assert state.dict is node.__dict__, (
        "SQLAlchemy: an instance's state dict is no longer its __dict__; _detached "
        "(metalplane/db/api.py) loads the columns by writing __dict__")
    with db.read() as s:
        ref = s.get(Node, node.id)
    assert ref is not None
    ref_state = sa.inspect(ref)
    for flag in ("detached", "persistent", "transient", "pending", "has_identity",
                 "modified", "key", "unloaded", "expired_attributes"):
        assert getattr(state, flag) == getattr(ref_state, flag), (
            f"SQLAlchemy: a _detached object's {flag} is {getattr(state, flag)!r}, a "
            f"session-loaded detached one's {getattr(ref_state, flag)!r} "
            "(_detached, metalplane/db/api.py)")
    assert state.detached and not state.unloaded
    for attr in sa.inspect(Node).column_attrs:
        assert getattr(node, attr.key) == getattr(ref, attr.key), attr.key
        assert not state.attrs[attr.key].history.has_changes(), (
            f"SQLAlchemy: {attr.key} of a _detached object has pending history")
    assert node.driver_info == {"a": 1} and node.traits == ["T"]
    assert [n.id for n in db_api.rows_where(db, Node, name="n1")] == [node.id]


def test_detached_objects_update_through_db_api_and_a_session(db: Database) -> None:
    node = db_api.create_node(db, {"name": "n2", "driver": "fake-hardware",
                                   "provision_state": "enroll"})
    updated = db_api.update_node(db, node.id, {"provision_state": "manageable"})
    assert updated.provision_state == "manageable" and updated.name == "n2"
    assert db_api.get_node(db, node.uuid).provision_state == "manageable"
    # a detached object put into a session writes only what changed on it
    with db.write() as s:
        s.add(updated)
        updated.description = "rack 4"
    again = db_api.get_node(db, node.uuid)
    assert (again.description, again.provision_state, again.name) == (
        "rack 4", "manageable", "n2"), (
        "SQLAlchemy: a _detached object added to a session and changed was not saved as "
        "a loaded object would be (_detached, metalplane/db/api.py)")
