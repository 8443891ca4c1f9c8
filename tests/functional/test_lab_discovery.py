"""``metalplane demo --discovery`` on the virtual rack, for real: a node nobody enrolled is
powered on through its iDRAC (sushy-tools over TLS with the lab's CA, root/calvin),
PXE-boots the discovery script from dnsmasq, its agent posts its inventory, metalplane
enrolls it, the seed's rules.json (imported as is) makes it idrac, and it goes on to
available. Under the lab lock; about a minute."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from metalplane.lab.demo import Demo
from metalplane.lab.discovery_demo import SEED_RULES
from tests.functional.test_lab import lab_name  # noqa: F401 - the fixture
from tests.helpers.peers import free_port

pytestmark = pytest.mark.functional
SEED = Path(__file__).parents[1] / "unit" / "fixtures" / "seed_rules.json"


def test_the_demo_imports_the_seed_rules_as_is() -> None:
    assert json.loads(SEED.read_text()) == SEED_RULES


def test_demo_discovery(lab_name: str) -> None:  # noqa: F811
    t0 = time.monotonic()
    buf = io.StringIO()
    demo = Demo(nodes=0, name=lab_name, port=free_port(), timeout=150, discovery=True,
                console=Console(file=buf, width=200, highlight=False))
    code = demo.run()
    out = buf.getvalue()
    failed = [c for c in demo.checks if not c.ok]
    assert code == 0 and not failed, out[-6000:]
    whats = " | ".join(c.what for c in demo.checks)
    for check in ("enrolled by discovery (plugin data auto_discovered)",
                  "the seed's rule made it idrac",
                  "drac_address 127.0.10.1 is its inventory's bmc_address",
                  "drac_password is not returned by the API",
                  "powered off through its iDRAC after discovery",
                  "LLDP wired it", "cleaned on the cleaning network",
                  "discovered, idrac, and available"):
        assert f"new-1: {check}" in whats or check in whats, whats
    assert "new-1 (the machine): agent" in out  # it booted the agent to be discovered
    assert "discover" in dict(demo.phases)
    print(f"demo --discovery: {time.monotonic() - t0:.0f}s")
