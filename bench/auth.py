"""An authenticated client's GET latency while others send wrong passwords (issue #17).

``metalplane server --auth-strategy http_basic`` runs as a process with one user. A client
with the right password sends ``GET /v1/nodes`` one after another for ``--seconds`` while
``--attackers`` threads send the same GET with a wrong password as fast as they are
answered, in three scenarios: nobody attacks; the attackers share one address
(127.0.0.1); each attacker has its own (127.0.0.2 …, so the per-address limiter holds each
back only after its own failures). The peer, in the same run, is metalplane as it was at
``--peer-rev`` (9d55b8a: bcrypt on the event loop, no limiter), started from a temporary
git worktree with the same virtualenv.

Prints the machine, versions, parameters and, per server and scenario, the client's GET
p50/p99 in ms and the attackers' answers; writes ``bench/results/auth.json``.
Run: ``.venv/bin/python bench/auth.py [--seconds 10 --attackers 16]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, ROOT, cpu_seconds, header, machine, percentile, write_result
from metalplane import __version__
from metalplane.api.auth import hash_password
from metalplane.common.process import spawn, stop
from metalplane.lab.rack import free_port, wait_http

USER, PASSWORD = "ops", "correct horse battery"
SCENARIOS = ("quiet", "one address", "own addresses")


@contextmanager
def server(code: Path, work: Path, name: str) -> Iterator[tuple[str, int]]:
    """``metalplane server`` from the tree at ``code``, http_basic, fresh data dir."""
    data = work / name
    data.mkdir(parents=True)
    (data / "htpasswd").write_text(f"{USER}:{hash_password(PASSWORD)}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "metalplane.cli.main", "server", "--port", str(port),
           "--data-dir", str(data), "--auth-strategy", "http_basic"]
    env = {**os.environ, "PYTHONPATH": str(code), "METALPLANE_NETWORK_PORT": "0"}
    with open(work / f"{name}.log", "ab") as out:
        proc = spawn(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=code)
    try:
        wait_http(f"{url}/v1", proc, work / f"{name}.log", "metalplane", timeout=120)
        yield url, proc.pid
    finally:
        stop(proc, grace=20)


def attack(url: str, source: str | None, until: float, answers: Counter[int],
           lock: threading.Lock) -> None:
    transport = httpx.HTTPTransport(local_address=source) if source else None
    with httpx.Client(base_url=url, auth=(USER, "wrong"), timeout=60,
                      transport=transport) as http:
        while time.monotonic() < until:
            try:
                code = http.get("/v1/nodes").status_code
            except httpx.HTTPError:
                code = 0
            with lock:
                answers[code] += 1


def scenario(url: str, pid: int, which: str, seconds: float, attackers: int
             ) -> dict[str, Any]:
    answers: Counter[int] = Counter()
    lock = threading.Lock()
    times: list[float] = []
    with httpx.Client(base_url=url, auth=(USER, PASSWORD), timeout=120) as http:
        assert http.get("/v1/nodes").status_code == 200  # verified (and cached) before
        until = time.monotonic() + seconds
        threads = []
        if which != "quiet":
            for i in range(attackers):
                source = None if which == "one address" else f"127.0.0.{2 + i}"
                threads.append(threading.Thread(target=attack, args=(url, source, until,
                                                                     answers, lock)))
        cpu0 = cpu_seconds(pid)
        for t in threads:
            t.start()
        while time.monotonic() < until:  # each GET started in the period counts, whole
            t0 = time.perf_counter()
            r = http.get("/v1/nodes")
            times.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                raise SystemExit(f"the authenticated client got {r.status_code}: {r.text}")
    for t in threads:
        t.join(timeout=120)
    return {"gets": len(times), "get_p50_ms": round(percentile(times, 50), 2),
            "get_p99_ms": round(percentile(times, 99), 2),
            "attacker_answers": dict(sorted(answers.items())),
            "server_cpu_s": round(cpu_seconds(pid) - cpu0, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each scenario")
    p.add_argument("--attackers", type=int, default=16, help="threads with wrong passwords")
    p.add_argument("--peer-rev", default="9d55b8a",
                   help="the git revision of the peer; empty: no peer")
    p.add_argument("--out", type=Path, default=RESULTS / "auth.json")
    args = p.parse_args()
    if args.seconds <= 0 or not 1 <= args.attackers <= 200:
        sys.exit("--seconds must be > 0 and --attackers 1-200")
    result: dict[str, Any] = {
        "script": "bench/auth.py", "machine": machine(),
        "versions": {"metalplane": __version__, "peer": args.peer_rev or "none"},
        "parameters": {"seconds": args.seconds, "attackers": args.attackers,
                       "scenarios": list(SCENARIOS)},
        "runs": {}}
    header(result)
    work = Path(tempfile.mkdtemp(prefix="mpb-auth-"))
    sides = [("metalplane", ROOT)]
    try:
        if args.peer_rev:
            peer = work / "peer-tree"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(peer),
                            args.peer_rev], check=True, capture_output=True, timeout=120)
            sides.append((f"metalplane@{args.peer_rev}", peer))
        for side, code in sides:
            result["runs"][side] = {}
            with server(code, work, side.replace("@", "-")) as (url, pid):
                for which in SCENARIOS:
                    row = scenario(url, pid, which, args.seconds, args.attackers)
                    result["runs"][side][which] = row
                    print(f"{side:20s} {which:14s} GET p50 {row['get_p50_ms']:8.2f} ms  "
                          f"p99 {row['get_p99_ms']:9.2f} ms  ({row['gets']} GETs); "
                          f"attackers: {row['attacker_answers']}; server CPU "
                          f"{row['server_cpu_s']} s", flush=True)
        write_result(args.out, result)
    finally:
        if args.peer_rev:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(work / "peer-tree")], capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
