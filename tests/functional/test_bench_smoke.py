"""The benchmark scripts still run (tiny parameters; figures are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.rack import need_root_and_ovs

pytestmark = pytest.mark.functional
ROOT = Path(__file__).resolve().parents[2]


def test_switch_bench_runs(tmp_path: Path) -> None:
    need_root_and_ovs()
    out = tmp_path / "switch.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "switch.py"), "--ports", "5",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["parameters"]["ports"] == 5 and result["ratio"] > 0
    assert result["machine"]["cpus"] >= 1
