"""The benchmark scripts still run (tiny parameters; figures are not checked here, only
that each script finishes, prints and records what it measured)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from metalplane.lab.rack import free_port
from tests.helpers.rack import need_root, need_root_and_ovs

pytestmark = pytest.mark.functional
ROOT = Path(__file__).resolve().parents[2]


def bench(script: str, out: Path, *args: str, timeout: int = 300) -> dict[str, Any]:
    r = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--out",
                        str(out)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["machine"]["cpus"] >= 1 and result["versions"]["metalplane"]
    assert "machine:" in r.stdout and "parameters:" in r.stdout
    return result


def test_switch_bench_runs(tmp_path: Path) -> None:
    need_root_and_ovs()
    result = bench("switch.py", tmp_path / "switch.json", "--ports", "5")
    assert result["parameters"]["ports"] == 5 and result["ratio"] > 0


def test_lifecycle_bench_runs_metalplane_side(tmp_path: Path) -> None:
    # the peer (Ironic in its own virtualenv) is left out: installing it is the slow part
    result = bench("lifecycle.py", tmp_path / "lifecycle.json", "--sizes", "3", "--solo", "0",
                   "--peer", "none", "--clients", "2")
    run = result["runs"][0]["metalplane"]
    assert set(run["phases_s"]) == {"create", "manage", "provide", "deploy", "undeploy"}
    assert run["nodes_per_min"] > 0 and run["peak_rss_mib"] > 0 and run["gets"] >= 3 * 4
    assert result["ratio"] is None


def test_dhcp_bench_runs(tmp_path: Path) -> None:
    need_root()
    result = bench("dhcp.py", tmp_path / "dhcp.json", "--hosts", "20", "--samples", "2")
    for way in ("client_alone", "metalplane", "hostsfile_sighup"):
        assert result["results"][way]["median_ms"] > 0
    assert result["ratio"] > 0
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "mpbd-" not in left, left


def test_image_bench_runs(tmp_path: Path) -> None:
    result = bench("image.py", tmp_path / "image.json", "--size-mib", "8", "--dir",
                   str(tmp_path))
    assert {(r["format"], r["sparse"]) for r in result["runs"]} == {
        ("raw", False), ("raw", True), ("qcow2", False), ("qcow2", True)}
    assert all(r["metalplane"]["mib_per_s"] > 0 for r in result["runs"])
    for r in result["runs"]:  # the best of the three writes counts, the median is kept
        for tool in ("metalplane", "qemu-img"):
            times = r[tool]["all_seconds"]
            assert len(times) == 3 and r[tool]["seconds"] == min(times)
            assert r[tool]["seconds"] <= r[tool]["median_seconds"] <= max(times)
    assert result["ratio"] > 0


def test_lab_bench_runs_one_node(tmp_path: Path) -> None:
    need_root_and_ovs()
    result = bench("lab.py", tmp_path / "lab.json", "--nodes", "1", "--name", "mpbs",
                   "--port", str(free_port()), timeout=600)
    r = result["results"]
    assert r["enroll_to_active_s"] > 0 and 0 < r["control_plane_share"] < 1
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "mpbs" not in left, left


def test_internals_bench_runs(tmp_path: Path) -> None:
    need_root_and_ovs()  # part 4 runs a private ovsdb-server and ovs-vswitchd
    result = bench("internals.py", tmp_path / "internals.json", "--quick")
    assert len(result["results"]) >= 5
    assert all(row["default"] > 0 and row["patched"] > 0 for row in result["results"])


def test_auth_bench_runs_without_the_peer(tmp_path: Path) -> None:
    result = bench("auth.py", tmp_path / "auth.json", "--seconds", "1", "--attackers", "2",
                   "--peer-rev", "")
    runs = result["runs"]["metalplane"]
    assert set(runs) == {"quiet", "one address", "own addresses"}
    assert all(r["gets"] > 0 and r["get_p99_ms"] > 0 for r in runs.values())
    assert sum(runs["one address"]["attacker_answers"].values()) > 0


def test_ovn_bench_runs(tmp_path: Path) -> None:
    need_root_and_ovs()
    if shutil.which("ovn-northd") is None:
        pytest.skip("OVN is not installed: run scripts/setup.sh")
    result = bench("ovn.py", tmp_path / "ovn.json", "--ports", "5", "--lsps", "50",
                   "--samples", "1")
    assert result["results"]["bind_unbind"]["metalplane_nb_transactions"] == 2
    assert result["ratio"] > 0
    join = result["results"]["join_to_dhcp_answer"]
    assert join["metalplane"]["median_ms"] > 0 and join["per_call"]["median_ms"] > 0
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "mpbo-" not in left, left


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl")
def test_k8s_bench_runs(tmp_path: Path) -> None:
    result = bench("k8s.py", tmp_path / "k8s.json", "--hosts", "3", "--get-hosts", "5",
                   "--samples", "2", "--watch-samples", "2", "--poll", "0.3")
    figures = result["figures"]
    assert figures["create"]["until_all_available_s"] >= figures["create"]["kubectl_create_s"]
    assert figures["scale"]["up_until_all_provisioned_s"] > 0
    assert figures["get_at_hosts"]["hosts"] == 3 and figures["get_at_get_hosts"]["hosts"] == 5
    assert figures["extra_hosts"]["states"] == {"available/OK": 3, "registering/error": 2}
    assert figures["watch"]["samples"] == 2
    assert [row["met"] for row in result["comparison"]] == [None] * 6  # no target at 3 hosts
