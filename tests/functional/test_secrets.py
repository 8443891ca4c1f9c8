"""Secrets stay secret (issue #17): a JSON patch cannot read a BMC password back, a sealed
value cannot be moved where it would be decrypted and used, the data directory, database
and key are private from the first start, and the key can be rotated."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from metalplane.common.secrets import SecretBox
from tests.helpers.server import RunningServer, running_server

SECRET = "Sup3r-Secret-Pw"
INFO = {"redfish_address": "http://127.0.0.1:9", "redfish_username": "admin",
        "redfish_password": SECRET}


def stored_info(server: RunningServer) -> dict[str, str]:
    raw = server.service.db.engine.raw_connection()
    try:
        row = raw.cursor().execute("select driver_info from nodes").fetchone()
    finally:
        raw.close()
    return dict(json.loads(row[0]))


def test_a_patch_never_reads_a_secret_back(server: RunningServer) -> None:
    server.create_node(name="s", driver="redfish", driver_info=INFO)
    sealed = stored_info(server)["redfish_password"]
    assert sealed.startswith("fernet:")
    attacks = [
        [{"op": "copy", "from": "/driver_info/redfish_password",
          "path": "/driver_info/redfish_address"}],
        [{"op": "copy", "from": "/driver_info/redfish_password", "path": "/extra/x"}],
        [{"op": "move", "from": "/driver_info/redfish_password", "path": "/extra/x"}],
        [{"op": "copy", "from": "/driver_info", "path": "/extra/all"}],
        [{"op": "test", "path": "/driver_info/redfish_password", "value": "guess"}],
        [{"op": "test", "path": "/driver_info", "value": {}}],
        [{"op": "add", "path": "/driver_info/redfish_address", "value": sealed}],
    ]
    for patch in attacks:
        r = server.http.patch("/v1/nodes/s", json=patch)
        assert r.status_code == 400, (patch, r.text)
        assert "secret" in r.text, r.text
        assert SECRET not in r.text and sealed not in r.text and "fernet:" not in r.text
    node = server.node("s")
    assert node["extra"] == {} and node["driver_info"]["redfish_address"] == INFO[
        "redfish_address"]
    assert stored_info(server)["redfish_password"] == sealed
    # writing a secret is still allowed
    r = server.http.patch("/v1/nodes/s", json=[
        {"op": "replace", "path": "/driver_info/redfish_password", "value": "new-pw"}])
    assert r.status_code == 200, r.text


def test_only_secret_keys_are_decrypted(tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "secret.key")
    sealed = box.encrypt(SECRET)
    clear = box.decrypt_driver_info({"redfish_password": sealed, "redfish_address": sealed})
    assert clear["redfish_password"] == SECRET
    assert clear["redfish_address"] == sealed  # never in clear where it would be used


def test_data_dir_database_and_key_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data):
        pass
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("metalplane.db", "secret.key"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    # found loosened: tightened at the next start
    data.chmod(0o755)
    (data / "metalplane.db").chmod(0o644)
    (data / "secret.key").chmod(0o644)
    with running_server(data):
        pass
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("metalplane.db", "secret.key"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name


def rotate(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METALPLANE_")}
    return subprocess.run([sys.executable, "-m", "metalplane.cli.main", "key", "rotate",
                           "--data-dir", str(data), *extra], capture_output=True, text=True,
                          timeout=60, env=env)


def test_key_rotation_reseals_every_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data) as server:
        for i in range(3):
            server.create_node(name=f"r{i}", driver="redfish", driver_info=INFO)
        r = rotate(data)  # a live conductor: refused, nothing changed
        assert r.returncode != 0 and "stop them first" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    old_key = (data / "secret.key").read_bytes()
    r = rotate(data)
    assert r.returncode == 0, r.stderr
    assert "3 node(s)" in r.stdout
    assert (data / "secret.key").read_bytes() != old_key
    assert not (data / "secret.key.new").exists()
    assert stat.S_IMODE((data / "secret.key").stat().st_mode) == 0o600
    with running_server(data) as server:
        info = stored_info(server)
        assert info["redfish_password"].startswith("fernet:")
        assert server.conductor.secrets.decrypt_driver_info(info)["redfish_password"] == SECRET
        (tmp_path / "old.key").write_bytes(old_key)
        old = SecretBox(tmp_path / "old.key")
        try:
            old.decrypt_driver_info(info)
        except Exception as exc:  # the old key opens nothing any more
            assert "another key" in str(exc)
        else:
            raise AssertionError("the old key still opens the rotated secrets")
