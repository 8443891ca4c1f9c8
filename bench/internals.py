"""The patches on libraries' private internals, each against the library's own default.

Five places where metalplane leans on how a library works inside (issue #16, item 9), each
measured with the patch and with the library's default, side by side in one run. Every
figure is CPU time. A run is ``--rounds`` rounds; within a round the variants take turns
in blocks (the first one alternating), so that drifts of the machine fall on both alike.
The table shows the median of the rounds for each variant and the gain of each round (%
of the default): its median, its range, and "clear" when it is above 3% in every round.

1. uvicorn's housekeeping tick (``metalplane.api.service._Server``): CPU of a metalplane
   server process idle for ``--idle`` seconds, ``uvicorn.Server`` against ``_Server``;
2. FastAPI's route class (``metalplane.api.app.OffloadedRoute``): server CPU per
   ``GET /v1/nodes/{uuid}`` on a real metalplane server (sequential, one keep-alive
   connection), and CPU per call of a ``def`` endpoint of a tiny FastAPI app called in
   this process as ASGI (``APIRoute`` against ``OffloadedRoute``);
3. Starlette's file chunk size (``metalplane.api.agent_api._BootFile``): server CPU per
   download of a ``--image-mib`` MiB image from ``/images/``, ``FileResponse`` (64 KiB
   pieces) against ``_BootFile`` (1 MiB);
4. ovsdbapp's ``cooperative_yield`` (``metalplane.network.ovs._Idl``): this process's CPU
   per ``OVSSwitch.apply`` flipping the VLAN of ``--ports`` ports, ovsdbapp's
   ``OvsdbIdl`` against ``_Idl`` (one connection open at a time). The switch is a private
   ovsdb-server and ovs-vswitchd on OVS's dummy datapath (``--enable-dummy=override
   --disable-system``, as OVS's own test suite runs it) in a temporary directory: no kernel
   datapath, no network devices, no root needed;
5. ORM objects from Core rows (``metalplane.db.api._detached``): ``--rows`` node rows read
   as detached ``Node`` objects through a session (``select(Node)``, the library's way),
   through Core and the public constructor (``Node(**row)``, then
   ``make_transient_to_detached``), and through Core and ``_detached``; the same for one
   node by id (``Session.get``; ``rows_where``), on SQLite in a temporary directory.

The servers of 1-3 are two metalplane server processes (this script with
``--child-server``): one as shipped, one with uvicorn's ``Server``, FastAPI's ``APIRoute``
and Starlette's ``FileResponse`` put back in place of the three seams; the conductor runs
without periodic tasks. Their CPU is the process's own ``time.process_time()`` (all
threads, in nanoseconds), asked for over a pipe.

Prints the machine, versions, parameters and the table; writes
``bench/results/internals.json``. Run: ``.venv/bin/python bench/internals.py [--quick]``
(about 70 s; ``--quick`` about 10 s, a smoke run). Part 4 needs Open vSwitch installed
and is reported as not measured without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import RESULTS, header, machine, write_result
from metalplane import __version__
from metalplane.lab.rack import free_port

OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
VARIANTS = ("default", "patched")
BLOCKS = 10  # blocks a round, the variants taking turns


# --------------------------------------------------------------------- server processes

def child_server(variant: str, data_dir: Path, port: int) -> None:
    """A metalplane server on ``port`` (``variant`` "default": with uvicorn's ``Server``,
    FastAPI's ``APIRoute`` and Starlette's ``FileResponse`` in place of the three seams).
    Answers each line on stdin with its ``time.process_time()``; stops at end of input."""
    import uvicorn
    from fastapi.responses import FileResponse
    from fastapi.routing import APIRoute

    from metalplane.api import agent_api, service
    from metalplane.api import app as app_module
    from metalplane.common.config import Settings

    if variant == "default":
        service._Server = uvicorn.Server  # type: ignore[misc,assignment]
        app_module.OffloadedRoute = APIRoute  # type: ignore[misc,assignment]
        agent_api._BootFile = FileResponse  # type: ignore[misc,assignment]
    settings = Settings(data_dir=data_dir, host="127.0.0.1", port=port, network_port=0,
                        auth_strategy="noauth", conductor_hostname=f"bench-{variant}",
                        power_sync_interval=3600, timeout_check_interval=3600)
    svc = service.Service(settings)
    boot = app_module.create_boot_app(svc.conductor)

    async def api_and_boot(scope: Any, receive: Any, send: Any) -> None:
        """The API, and the boot server's /images/ (its own listener in a real server)
        on the same port, so one process is measured."""
        is_boot = scope["type"] == "http" and scope["path"].startswith("/images/")
        await (boot if is_boot else svc.app)(scope, receive, send)

    # the API's uvicorn server as Service.http_server makes it, on one port alone
    server = service._Server(uvicorn.Config(api_and_boot, host="127.0.0.1", port=port,
                                            log_config=None, access_log=False))
    svc.start(periodic=False)

    def answer() -> None:
        for _ in sys.stdin:
            sys.stdout.write(f"{time.process_time()!r}\n")
            sys.stdout.flush()
        server.should_exit = True

    threading.Thread(target=answer, daemon=True).start()
    try:
        server.run()
    finally:
        svc.stop()


class Server:
    """One child server process (see :func:`child_server`) and an HTTP client to it."""

    def __init__(self, variant: str, work: Path, image: bytes) -> None:
        self.variant = variant
        data = work / variant
        (data / "images").mkdir(parents=True)
        (data / "images" / "bench.img").write_bytes(image)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child-server", variant, "--child-dir", str(data),
             "--child-port", str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.variant} server exited ({self.proc.returncode})")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.variant} server did not start in {timeout} s")
            time.sleep(0.2)

    def cpu(self) -> float:
        """CPU seconds the server process has used so far (all its threads)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def stop(self) -> None:
        self.http.close()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def server_cpu(server: Server, fn: Callable[[], None]) -> float:
    """CPU seconds ``server`` used while ``fn()`` ran."""
    c0 = server.cpu()
    fn()
    return server.cpu() - c0


def interleave(blocks: dict[str, Callable[[], float]], n: int, rnd: int) -> dict[str, float]:
    """Run each variant's block ``n`` times, the variants taking turns (which one goes
    first alternates from block to block and round to round): drifts of the machine during
    a round fall on both alike. The sum of what each variant's blocks returned."""
    total = dict.fromkeys(blocks, 0.0)
    order = list(blocks)
    for i in range(n):
        for v in (order if (i + rnd) % 2 == 0 else order[::-1]):
            total[v] += blocks[v]()
    return total


def get_nodes(server: Server, uuid: str, n: int) -> None:
    for _ in range(n):
        r = server.http.get(f"/v1/nodes/{uuid}")
        assert r.status_code == 200, r.text


def fetch_image(server: Server, n: int, size: int) -> None:
    for _ in range(n):
        got = 0
        with server.http.stream("GET", "/images/bench.img") as r:
            assert r.status_code == 200, r.status_code
            for chunk in r.iter_raw(1 << 20):
                got += len(chunk)
        assert got == size, (got, size)


def measure_servers(args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[float]]]:
    """Idle CPU (ms a second), CPU per node GET (ms) and per image fetch (ms) of both
    servers, ``args.rounds`` rounds each."""
    size = args.image_mib << 20
    image = os.urandom(size)
    per_get, per_fetch = max(1, args.requests // BLOCKS), max(1, args.fetches // BLOCKS)
    servers: dict[str, Server] = {}
    out: dict[str, dict[str, list[float]]] = {
        k: {v: [] for v in VARIANTS} for k in ("idle", "get", "image")}
    try:
        for v in VARIANTS:
            servers[v] = Server(v, work, image)
        uuids = {}
        for v, s in servers.items():
            s.wait_ready()
            r = s.http.post("/v1/nodes", json={"driver": "fake-hardware", "name": "bench-0"})
            assert r.status_code == 201, r.text
            uuids[v] = r.json()["uuid"]
            get_nodes(s, uuids[v], 50)  # warm: thread pools, caches, connection
            fetch_image(s, 1, size)
        for rnd in range(args.rounds):
            # both idle at once: nothing else runs meanwhile
            c0 = {v: s.cpu() for v, s in servers.items()}
            time.sleep(args.idle)
            for v, s in servers.items():
                out["idle"][v].append((s.cpu() - c0[v]) / args.idle * 1e3)
            # the loads in blocks, the two servers taking turns block by block
            get = interleave({v: functools.partial(
                server_cpu, s, functools.partial(get_nodes, s, uuids[v], per_get))
                for v, s in servers.items()}, BLOCKS, rnd)
            fetch = interleave({v: functools.partial(
                server_cpu, s, functools.partial(fetch_image, s, per_fetch, size))
                for v, s in servers.items()}, BLOCKS, rnd)
            for v in VARIANTS:
                out["get"][v].append(get[v] / (per_get * BLOCKS) * 1e3)
                out["image"][v].append(fetch[v] / (per_fetch * BLOCKS) * 1e3)
            print(f"  round {rnd + 1}: idle {_pair(out['idle'], rnd)} ms/s, "
                  f"GET node {_pair(out['get'], rnd)} ms, "
                  f"image {_pair(out['image'], rnd)} ms", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    return out


def _pair(series: dict[str, list[float]], i: int) -> str:
    return " / ".join(f"{series[v][i]:.3f}" for v in VARIANTS)


# ----------------------------------------------------------- FastAPI route, in process

def measure_route(args: argparse.Namespace) -> dict[str, list[float]]:
    """CPU per call (ms) of a ``def`` endpoint of a tiny FastAPI app, called as ASGI in this
    process, with ``APIRoute`` and with ``OffloadedRoute``."""
    from fastapi import FastAPI
    from fastapi.routing import APIRoute

    from metalplane.api.app import OffloadedRoute

    def tiny(route_class: type[APIRoute]) -> FastAPI:
        app = FastAPI()
        app.router.route_class = route_class

        @app.get("/items/{ident}")
        def item(ident: str) -> dict[str, Any]:
            return {"uuid": ident, "provision_state": "available", "power_state": "power off"}
        return app

    apps = {"default": tiny(APIRoute), "patched": tiny(OffloadedRoute)}
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/items/abc", "raw_path": b"/items/abc",
             "query_string": b"", "root_path": "", "headers": [(b"host", b"bench")],
             "client": ("127.0.0.1", 1), "server": ("bench", 80)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def calls(app: FastAPI, n: int) -> None:
        status: list[int] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
        for _ in range(n):
            await app(dict(scope), receive, send)
        assert status == [200] * n, status[:3]

    out: dict[str, list[float]] = {v: [] for v in VARIANTS}

    async def run() -> None:
        for app in apps.values():
            await calls(app, 50)  # warm
        per = max(1, args.requests // BLOCKS)
        for rnd in range(args.rounds):
            total = dict.fromkeys(VARIANTS, 0.0)
            for i in range(BLOCKS):
                for v in (VARIANTS if (i + rnd) % 2 == 0 else VARIANTS[::-1]):
                    c0 = time.process_time()
                    await calls(apps[v], per)
                    total[v] += time.process_time() - c0
            for v in VARIANTS:
                out[v].append(total[v] / (per * BLOCKS) * 1e3)

    asyncio.run(run())
    return out


# ------------------------------------------------------------------------ OVSDB commits

def measure_ovs(args: argparse.Namespace, work: Path) -> dict[str, list[float]] | str:
    """CPU of this process (ms) per ``OVSSwitch.apply`` of ``args.ports`` VLAN changes,
    with ovsdbapp's ``OvsdbIdl`` and with ``_Idl``; or why it was not measured."""
    for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path(OVS_SCHEMA).exists():
        return f"{OVS_SCHEMA} is missing"
    from ovsdbapp.backend.ovs_idl import connection

    from metalplane.network import ovs

    d = work / "ovs"
    d.mkdir()
    env = {**os.environ, "OVS_RUNDIR": str(d), "OVS_LOGDIR": str(d), "OVS_DBDIR": str(d)}
    address = f"unix:{d / 'db.sock'}"
    subprocess.run(["ovsdb-tool", "create", str(d / "conf.db"), OVS_SCHEMA], check=True)
    procs: list[subprocess.Popen[bytes]] = []
    seam = ovs._Idl
    try:
        procs.append(subprocess.Popen(
            ["ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d / 'db.sock'}",
             f"--unixctl={d / 'ovsdb.ctl'}", f"--log-file={d / 'ovsdb.log'}", "--no-chdir"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 15
        while not (d / "db.sock").exists():
            if time.monotonic() > deadline:
                return "ovsdb-server did not start"
            time.sleep(0.05)

        def vsctl(*a: str) -> None:
            subprocess.run(["ovs-vsctl", f"--db={address}", "--timeout=30", *a], check=True,
                           capture_output=True)
        vsctl("--no-wait", "init")
        procs.append(subprocess.Popen(
            ["ovs-vswitchd", address, "--enable-dummy=override", "--disable-system",
             "--disable-system-route", f"--unixctl={d / 'vswitchd.ctl'}",
             f"--log-file={d / 'vswitchd.log'}", "--no-chdir"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        names = [f"mpi{i}" for i in range(args.ports)]
        cmd = ["add-br", "mpi-br", "--", "set", "bridge", "mpi-br", "datapath_type=dummy"]
        for n in names:
            cmd += ["--", "add-port", "mpi-br", n, "tag=4094", "--", "set", "interface", n,
                    "type=dummy"]
        vsctl(*cmd)
        out: dict[str, list[float]] = {v: [] for v in VARIANTS}
        classes = {"default": connection.OvsdbIdl, "patched": seam}
        for rnd in range(args.rounds):
            for v in (VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]):
                # one connection at a time: an open IDL also processes the other's updates
                ovs._Idl = classes[v]  # type: ignore[misc]
                sw = ovs.OVSSwitch(address, "mpi-br", timeout=30)
                try:
                    sw.apply([ovs.PortConfig(n, 1000) for n in names])  # warm
                    c0 = time.process_time()
                    for k in range(args.commits):
                        sw.apply([ovs.PortConfig(n, 1001 + k % 2) for n in names])
                    out[v].append((time.process_time() - c0) / args.commits * 1e3)
                finally:
                    sw.close()
        return out
    finally:
        ovs._Idl = seam  # type: ignore[misc]
        for p in procs[::-1]:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---------------------------------------------------------------- detached ORM objects

def measure_db(args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[float]]]:
    """ms to read ``args.rows`` nodes, and µs to read one node by id, as detached ``Node``
    objects: through a session ("default"), Core + the public constructor ("public"),
    Core + ``_detached`` ("patched")."""
    import sqlalchemy as sa
    from sqlalchemy.orm import make_transient_to_detached

    from metalplane.db import api as db_api
    from metalplane.db.engine import Database
    from metalplane.db.models import Node

    db = Database(f"sqlite:///{work / 'db' / 'bench.sqlite'}")
    db.upgrade()
    with db.transaction() as conn:
        conn.execute(sa.insert(Node.__table__), [  # type: ignore[arg-type]
            {"uuid": f"00000000-0000-4000-8000-{i:012d}", "name": f"node-{i}",
             "driver": "redfish", "provision_state": "available", "power_state": "power off",
             "driver_info": {"redfish_address": f"https://10.0.{i >> 8}.{i & 255}",
                             "redfish_system_id": "/redfish/v1/Systems/1",
                             "redfish_password": "******"},
             "properties": {"cpus": 32, "memory_mb": 262144, "local_gb": 900,
                            "cpu_arch": "x86_64"},
             "traits": ["CUSTOM_GPU"], "resource_class": "baremetal"}
            for i in range(args.rows)])
    ids = [n.id for n in db_api.rows_where(db, Node)]
    table = Node.__table__
    select_all = sa.select(table).order_by(table.c.id)  # type: ignore[attr-defined]
    by_id = sa.select(table).where(table.c.id == sa.bindparam("id"))  # type: ignore[attr-defined]

    def public(row: sa.Row[Any]) -> Node:
        node = Node(**row._mapping)
        make_transient_to_detached(node)
        return node

    def list_session() -> list[Node]:
        with db.read() as s:
            return list(s.scalars(sa.select(Node).order_by(Node.id)))

    def list_public() -> list[Node]:
        return [public(r) for r in db.execute(select_all)]

    def list_patched() -> list[Node]:
        return list(db_api.rows_where(db, Node, order_by=("id",)))

    def one_session(i: int) -> Node | None:
        with db.read() as s:
            return s.get(Node, i)

    def one_public(i: int) -> Node:
        return public(db.execute(by_id, {"id": i})[0])

    def one_patched(i: int) -> Node:
        node: Node = db_api.rows_where(db, Node, id=i)[0]
        return node

    lists = {"default": list_session, "public": list_public, "patched": list_patched}
    ones = {"default": one_session, "public": one_public, "patched": one_patched}
    # the three give the same nodes, detached, every column loaded
    for fn in lists.values():
        nodes = fn()
        assert [n.id for n in nodes] == ids
        assert all(sa.inspect(n).detached and not sa.inspect(n).unloaded for n in nodes)
        assert nodes[-1].driver_info["redfish_system_id"] == "/redfish/v1/Systems/1"
    out: dict[str, dict[str, list[float]]] = {
        "list": {v: [] for v in lists}, "one": {v: [] for v in lists}}
    def timed(fn: Callable[[], object]) -> float:
        c0 = time.process_time()
        fn()
        return time.process_time() - c0

    # Objects that live through the run are left out of the collector's full passes: which
    # way happens to trigger one (scanning the whole heap) would decide the figures.
    gc.collect()
    gc.freeze()
    for rnd in range(args.rounds):
        # every read of all rows, and every node by id, by each way in turn
        lists_s = interleave({v: functools.partial(timed, fn) for v, fn in lists.items()},
                             args.lists, rnd)
        ones_s = dict.fromkeys(lists, 0.0)
        for k, i in enumerate(ids):
            for v, one in (ones.items() if (k + rnd) % 2 == 0 else list(ones.items())[::-1]):
                ones_s[v] += timed(functools.partial(one, i))
        for v in lists:
            out["list"][v].append(lists_s[v] / args.lists * 1e3)
            out["one"][v].append(ones_s[v] / len(ids) * 1e6)
    gc.unfreeze()
    db.dispose()
    return out


# -------------------------------------------------------------------------------- table

def row(what: str, unit: str, series: dict[str, list[float]], default: str = "default",
        patched: str = "patched") -> dict[str, Any]:
    """Medians of ``series[default]`` and ``series[patched]`` over the rounds, and the gain
    (% of the default) of each round: its median, its range, and whether it is clear
    (above 3% in every round)."""
    gains = [(d - p) / d * 100 for d, p in zip(series[default], series[patched], strict=True)]
    return {"what": what, "unit": unit,
            "default": round(statistics.median(series[default]), 4),
            "patched": round(statistics.median(series[patched]), 4),
            "gain_pct": round(statistics.median(gains), 1),
            "gain_range_pct": [round(min(gains), 1), round(max(gains), 1)],
            "clear": min(gains) > 3.0,
            "rounds": {default: [round(x, 4) for x in series[default]],
                       patched: [round(x, 4) for x in series[patched]]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run, ~10 s)")
    p.add_argument("--rounds", type=int, default=5, help="rounds, alternating the variants")
    p.add_argument("--idle", type=float, default=6.0, help="idle seconds a round (1)")
    p.add_argument("--requests", type=int, default=1000, help="GETs a round and variant (2)")
    p.add_argument("--fetches", type=int, default=20, help="image downloads a round (3)")
    p.add_argument("--image-mib", type=int, default=24, help="image size, MiB (3)")
    p.add_argument("--ports", type=int, default=500, help="switch ports per commit (4)")
    p.add_argument("--commits", type=int, default=10, help="commits a round and variant (4)")
    p.add_argument("--rows", type=int, default=1000, help="node rows (5)")
    p.add_argument("--lists", type=int, default=20, help="reads of all rows a round (5)")
    p.add_argument("--out", type=Path, default=RESULTS / "internals.json")
    p.add_argument("--child-server", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--child-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_server:
        child_server(args.child_server, args.child_dir, args.child_port)
        return
    if args.quick:
        args.rounds, args.idle, args.requests, args.fetches, args.image_mib = 2, 2.0, 200, 4, 8
        args.ports, args.commits, args.rows, args.lists = 100, 3, 200, 5
    libs = ("uvicorn", "fastapi", "starlette", "anyio", "ovsdbapp", "ovs", "SQLAlchemy")
    versions = {"metalplane": __version__,
                **{lib: importlib.metadata.version(lib) for lib in libs}}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        versions["openvswitch"] = subprocess.run(
            ["ovs-vswitchd", "--version"], capture_output=True, text=True,
            check=True).stdout.splitlines()[0]
    params = {k: getattr(args, k) for k in ("rounds", "idle", "requests", "fetches",
                                             "image_mib", "ports", "commits", "rows", "lists")}
    result: dict[str, Any] = {"script": "bench/internals.py", "machine": machine(),
                              "versions": versions, "parameters": params}
    header(result)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mpi-"))
    rows: list[dict[str, Any]] = []
    not_measured: dict[str, str] = {}
    try:
        print("1-3. two metalplane servers (default / patched):", flush=True)
        srv = measure_servers(args, work)
        rows.append(row(f"1. uvicorn tick: server CPU idle ({args.idle:g} s)", "ms/s",
                        srv["idle"]))
        rows.append(row("2. route class: server CPU per GET /v1/nodes/{uuid}", "ms",
                        srv["get"]))
        print("2. tiny FastAPI app, in process", flush=True)
        rows.append(row("2. route class: CPU per call, tiny app via ASGI", "ms",
                        measure_route(args)))
        rows.append(row(f"3. chunk size: server CPU per {args.image_mib} MiB image fetch",
                        "ms", srv["image"]))
        print("4. OVSDB commits", flush=True)
        ovs = measure_ovs(args, work)
        if isinstance(ovs, str):
            not_measured["4. cooperative_yield"] = ovs
            print(f"   not measured: {ovs}")
        else:
            rows.append(row(f"4. cooperative_yield: client CPU per commit of "
                            f"{args.ports} ports", "ms", ovs))
        print("5. detached ORM objects", flush=True)
        db = measure_db(args, work)
        rows.append(row(f"5. _detached vs session: read {args.rows} nodes", "ms",
                        db["list"]))
        rows.append(row(f"5. _detached vs public constructor: read {args.rows} nodes",
                        "ms", db["list"], default="public"))
        rows.append(row("5. _detached vs session: one node by id", "µs", db["one"]))
        rows.append(row("5. _detached vs public constructor: one node by id", "µs",
                        db["one"], default="public"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["results"] = rows
    result["not_measured"] = not_measured
    result["seconds"] = round(time.perf_counter() - t0, 1)
    width = max(len(r["what"]) for r in rows)
    print(f"\n{'what':<{width}}  {'unit':>4}  {'default':>9}  {'patched':>9}  "
          f"{'gain %':>6}  {'rounds':>13}  clear")
    for r in rows:
        lo, hi = r["gain_range_pct"]
        print(f"{r['what']:<{width}}  {r['unit']:>4}  {r['default']:9.4g}  "
              f"{r['patched']:9.4g}  {r['gain_pct']:6.1f}  {f'{lo:.1f}..{hi:.1f}':>13}  "
              f"{'yes' if r['clear'] else 'no'}")
    for what, why in not_measured.items():
        print(f"{what}: not measured ({why})")
    print(f"({result['seconds']} s)")
    write_result(args.out, result)


if __name__ == "__main__":
    main()
