"""Real peers for functional tests: the sushy-tools Redfish emulator and a pyghmi fake BMC.

Each runs as a child process on a free 127.0.0.1 port and is killed on exit, even when
the test failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from metalplane.common import process
from metalplane.lab.lab import emulator_command, write_emulator_config
from metalplane.lab.rack import free_port, wait_http
from metalplane.lab.vm import SHA1_ONLY_BMC


def stop_process(proc: subprocess.Popen[Any]) -> None:
    process.stop(proc)


@dataclass
class Emulator:
    url: str
    systems: list[dict[str, Any]] = field(default_factory=list)

    def system(self, uuid: str) -> dict[str, Any]:
        """The emulator's own view of a system (its Redfish resource)."""
        r = httpx.get(f"{self.url}/redfish/v1/Systems/{uuid}", timeout=10)
        r.raise_for_status()
        return dict(r.json())


@contextlib.contextmanager
def sushy_emulator(tmp: Path, count: int = 3, notify_url: str | None = None
                   ) -> Iterator[Emulator]:
    """sushy-tools' emulator with ``count`` fake systems, each with one NIC."""
    systems = [{
        "uuid": str(uuidlib.uuid4()), "name": f"fake-{i}", "power_state": "Off",
        "external_notifier": bool(notify_url),
        "nics": [{"mac": f"52:54:00:aa:00:{i:02x}", "ip": f"192.0.2.{10 + i}"}],
    } for i in range(count)]
    port = free_port()
    cfg = tmp / "emulator.conf"
    write_emulator_config(cfg, port, tmp / "emulator-state", systems,
                          notify_url or "http://127.0.0.1:9")
    log = open(tmp / "emulator.log", "w")  # noqa: SIM115 - closed below
    proc = process.spawn(emulator_command(cfg), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/redfish/v1/Systems", proc, tmp / "emulator.log", "sushy-emulator")
        yield Emulator(url=url, systems=systems)
    finally:
        stop_process(proc)
        log.close()


# pyghmi's BMC made to refuse SHA-256 as a SHA-1-only BMC does (the lab's virtualbmc too:
# metalplane.lab.vm.SHA1_ONLY_BMC says why)
FAKE_BMC = SHA1_ONLY_BMC + textwrap.dedent('''
    import json, sys
    import pyghmi.ipmi.bmc as bmc

    STATE = sys.argv[2]

    class Bmc(bmc.Bmc):
        def __init__(self, port):
            super().__init__({"admin": "s3cret-ipmi"}, port=port, address="127.0.0.1")
            self.state = {"power": "off", "bootdev": "default", "persistent": False}
            self.save()

        def save(self):
            with open(STATE, "w") as f:
                json.dump(self.state, f)

        def get_boot_device(self):
            return self.state["bootdev"]

        def set_boot_device(self, bootdevice):
            self.state["bootdev"] = bootdevice
            self.save()

        def get_power_state(self):
            return self.state["power"]

        def power_off(self):
            self.state["power"] = "off"; self.save()

        def power_on(self):
            self.state["power"] = "on"; self.save()

        def power_reset(self):
            self.state["power"] = "on"; self.save()

        def power_shutdown(self):
            self.state["power"] = "off"; self.save()

        def cold_reset(self):
            raise SystemExit(0)

    Bmc(int(sys.argv[1])).listen()
''')


@dataclass
class FakeBmc:
    port: int
    state_file: Path

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_file.read_text()))


@contextlib.contextmanager
def fake_ipmi_bmc(tmp: Path) -> Iterator[FakeBmc]:
    """pyghmi's BMC class answering IPMI 2.0 (RMCP+) on a UDP port of 127.0.0.1; user
    ``admin``, password ``s3cret-ipmi``. Its state is written to a JSON file."""
    port = free_port(socket.SOCK_DGRAM)
    script = tmp / "fakebmc.py"
    script.write_text(FAKE_BMC)
    state = tmp / "bmc-state.json"
    log = open(tmp / "fakebmc.log", "w")  # noqa: SIM115 - closed below
    proc = process.spawn([sys.executable, str(script), str(port), str(state)], stdout=log,
                         stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not state.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("fake BMC did not start: "
                                   + (tmp / "fakebmc.log").read_text()[-2000:])
            time.sleep(0.1)
        yield FakeBmc(port=port, state_file=state)
    finally:
        stop_process(proc)
        log.close()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port, run as the ``postgres``
    user; yields a SQLAlchemy URL. Removed on exit."""
    import glob
    import shutil
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins or shutil.which("runuser") is None or os.geteuid() != 0:
        import pytest
        pytest.skip("needs root and Debian's postgresql (scripts/setup.sh installs it)")
    bindir = bins[-1]
    root = Path(tempfile.mkdtemp(prefix="metalplane-pg-"))
    shutil.chown(root, "postgres", "postgres")
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    try:
        subprocess.run([*as_pg, f"{bindir}/initdb", "-D", str(data), "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True, timeout=120)
        subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", str(data), "-l",
                        str(root / "log"), "-w", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
                        "-c max_connections=300", "start"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_pg, f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port),
                        "metalplane"], check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/metalplane"
    finally:
        subprocess.run([*as_pg, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
