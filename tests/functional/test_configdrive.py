"""The agent's config drive as cloud-init finds it: a partition labelled ``config-2`` at
the end of a disk holding an MBR image, a GPT image or a bare ext4 filesystem, each
smaller than the disk. Checked with the tools the booted OS has: ``sfdisk``, ``blkid -p``
at the partition's offset (as ds-identify probes), and a read-only loop device on the
partition's range, mounted where the kernel has iso9660."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pycdlib
import pytest

from metalplane.agent import configdrive

pytestmark = pytest.mark.functional

DISK = 256 << 20
IMAGE = 32 << 20  # what the image covers before the disk grows under it
SECTOR = 512
MARKER = b"the image's own partition, untouched" * 100
CONTENTS: dict[str, Any] = {
    "meta_data": {"uuid": "6f1c9a4e-0000-4000-8000-000000000001", "hostname": "n1"},
    "network_data": {"links": [{"id": "eth0", "type": "phy",
                                "ethernet_mac_address": "52:54:00:00:00:01"}],
                     "networks": [{"id": "n0", "link": "eth0", "type": "ipv4",
                                   "ip_address": "10.1.0.5", "netmask": "255.255.255.0"}]},
    "user_data": "#cloud-config\nhostname: n1\n",
}


@pytest.fixture(autouse=True)
def _tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mount (CI runs as root)")
    for tool in ("sfdisk", "blkid", "losetup", "mount", "umount", "mkfs.ext4"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            pytest.skip(f"{tool} missing: run scripts/setup.sh")


def run(*cmd: str, stdin: str | None = None, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60,
                          check=check)


def image_disk(tmp: Path, script: str | None) -> Path:
    """A DISK-byte sparse disk holding an IMAGE-byte image: a partition table written by
    ``script`` (MARKER at the start of partition 1), or an ext4 filesystem if None."""
    disk = tmp / "disk"
    with open(disk, "wb") as f:
        f.truncate(IMAGE)
    if script is None:
        run("mkfs.ext4", "-q", "-F", "-L", "rootfs", str(disk))
    else:
        run("sfdisk", "-q", str(disk), stdin=script)
        with open(disk, "r+b") as f:
            f.seek(1 << 20)
            f.write(MARKER)
    with open(disk, "r+b") as f:  # the disk is bigger than the image written to it
        f.truncate(DISK)
    return disk


def table(disk: Path) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(run("sfdisk", "--json", str(disk)).stdout)["partitiontable"]
    return got


def blkid_at(disk: Path, offset: int, size: int) -> dict[str, str]:
    out = run("blkid", "-p", "-O", str(offset), "-S", str(size), "-o", "export", str(disk))
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def iso9660_in_kernel() -> bool:
    return "iso9660" in Path("/proc/filesystems").read_text().split()


def drive_files(disk: Path, offset: int, size: int) -> dict[str, str]:
    """``openstack/latest``'s files read through a read-only loop device on the partition's
    range: mounted, as cloud-init does, if the kernel has iso9660 (some containers' kernels
    have not, nor modules to load); else the loop device is read with pycdlib."""
    loop = run("losetup", "--find", "--show", "-r", "--offset", str(offset),
               "--sizelimit", str(size), str(disk)).stdout.strip()
    try:
        if not iso9660_in_kernel():
            return _files_by_pycdlib(loop)
        mnt = Path(tempfile.mkdtemp(prefix="mp-cd-"))
        try:
            run("mount", "-t", "iso9660", "-o", "ro", loop, str(mnt))
            try:
                latest = mnt / "openstack" / "latest"
                return {p.name: p.read_text() for p in latest.iterdir()}
            finally:
                run("umount", str(mnt), check=False)
        finally:
            mnt.rmdir()
    finally:
        run("losetup", "-d", loop, check=False)


def _files_by_pycdlib(device: str) -> dict[str, str]:
    iso = pycdlib.PyCdlib()
    with open(device, "rb") as f:
        iso.open_fp(f)
        try:
            out = {}
            for child in iso.list_children(rr_path="/openstack/latest"):
                name = child.rock_ridge.name().decode()
                if name in (".", ".."):
                    continue
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=f"/openstack/latest/{name}")
                out[name] = buf.getvalue().decode()
            return out
        finally:
            iso.close()


def check_as_cloud_init(disk: Path, part: configdrive.Partition) -> dict[str, Any]:
    """What ds-identify and cloud-init would see; returns the table."""
    pt = table(disk)
    last = max(pt["partitions"], key=lambda p: p["start"])
    assert (last["start"] * SECTOR, last["size"] * SECTOR) == (part.offset, part.size)
    assert last["node"].endswith(str(part.number))
    assert part.offset >= DISK - configdrive.RESERVED  # clear of the image's space
    verify = run("sfdisk", "--verify", str(disk))
    assert "No errors detected" in verify.stdout, verify.stdout + verify.stderr
    assert "error" not in verify.stderr.lower(), verify.stderr
    probed = blkid_at(disk, part.offset, part.size)
    assert probed.get("LABEL") == "config-2" and probed.get("TYPE") == "iso9660", probed
    files = drive_files(disk, part.offset, part.size)
    assert sorted(files) == ["meta_data.json", "network_data.json", "user_data"]
    assert json.loads(files["meta_data.json"]) == CONTENTS["meta_data"]
    assert json.loads(files["network_data.json"]) == CONTENTS["network_data"]
    assert files["user_data"] == CONTENTS["user_data"]
    assert configdrive.read(str(disk), DISK) == CONTENTS  # as the lab's disk boot reads it
    return pt


def marker_intact(disk: Path) -> bool:
    with open(disk, "rb") as f:
        f.seek(1 << 20)
        return f.read(len(MARKER)) == MARKER


def test_mbr_image_gets_a_primary_partition_at_the_disk_end(tmp_path: Path) -> None:
    disk = image_disk(tmp_path, "label: dos\nstart=2048, type=L\n")
    part = configdrive.write(str(disk), DISK, CONTENTS)
    pt = check_as_cloud_init(disk, part)
    assert pt["label"] == "dos"
    assert part.number == 2
    assert part.offset + part.size == DISK
    assert [p["start"] for p in pt["partitions"]] == [2048, part.offset // SECTOR]
    assert marker_intact(disk)


def test_gpt_image_gets_its_backup_header_moved_and_a_partition_at_the_end(
        tmp_path: Path) -> None:
    disk = image_disk(tmp_path, "label: gpt\nstart=2048, size=40960, type=L, name=root\n")
    sectors = DISK // SECTOR
    assert table(disk)["lastlba"] < IMAGE // SECTOR  # the image's backup header, not ours
    part = configdrive.write(str(disk), DISK, CONTENTS)
    pt = check_as_cloud_init(disk, part)
    assert pt["label"] == "gpt"
    assert pt["lastlba"] == sectors - 34  # 33 sectors of backup entries and header follow
    assert part.offset + part.size == (pt["lastlba"] + 1) * SECTOR
    assert [p.get("name") for p in pt["partitions"]] == ["root", "config-2"]
    with open(disk, "rb") as f:
        f.seek(SECTOR)
        primary = f.read(SECTOR)
        f.seek(DISK - SECTOR)
        backup = f.read(SECTOR)
    assert primary[:8] == backup[:8] == b"EFI PART"
    # the primary header's alternate LBA and the backup's own LBA: the disk's last sector
    assert struct.unpack_from("<Q", primary, 32)[0] == sectors - 1
    assert struct.unpack_from("<Q", backup, 24)[0] == sectors - 1
    assert marker_intact(disk)


def test_bare_filesystem_gets_an_mbr_holding_only_the_config_drive(tmp_path: Path) -> None:
    disk = image_disk(tmp_path, None)
    with open(disk, "rb") as f:
        before = f.read(IMAGE)
    part = configdrive.write(str(disk), DISK, CONTENTS)
    pt = check_as_cloud_init(disk, part)
    assert pt["label"] == "dos" and len(pt["partitions"]) == 1
    with open(disk, "rb") as f:
        after = f.read(IMAGE)
    assert after[440:512] != before[440:512]  # the new table
    assert after[:440] == before[:440] and after[512:] == before[512:]  # nothing else
    assert blkid_at(disk, 0, IMAGE).get("LABEL") == "rootfs"
    if shutil.which("e2fsck") or Path("/usr/sbin/e2fsck").exists():
        fsck = run("e2fsck", "-fn", str(disk), check=False)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_a_second_write_reuses_the_partition(tmp_path: Path) -> None:
    disk = image_disk(tmp_path, "label: gpt\nstart=2048, type=L\n")
    first = configdrive.write(str(disk), DISK, {"meta_data": {"hostname": "old"}})
    again = configdrive.write(str(disk), DISK, CONTENTS)
    assert again == first
    assert len(table(disk)["partitions"]) == 2
    check_as_cloud_init(disk, again)


def test_an_mbr_with_four_primaries_is_refused_and_left_alone(tmp_path: Path) -> None:
    disk = image_disk(tmp_path, "label: dos\n" + "".join(
        f"start={2048 + n * 8192}, size=8192, type=L\n" for n in range(4)))
    before = table(disk)
    with pytest.raises(ValueError, match="four primary partitions"):
        configdrive.write(str(disk), DISK, CONTENTS)
    assert table(disk) == before
    with pytest.raises(ValueError, match="no config drive"):
        configdrive.read(str(disk), DISK)


def test_a_tableless_disk_whose_first_sector_is_used_is_refused(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with open(disk, "wb") as f:
        f.write(b"XFSB" + bytes(508))  # a filesystem whose superblock is at byte 0
        f.truncate(DISK)
    with pytest.raises(ValueError, match="first sector is in use"):
        configdrive.write(str(disk), DISK, CONTENTS)
    assert disk.read_bytes()[:4] == b"XFSB"


def test_an_image_reaching_into_the_reserved_space_is_refused(tmp_path: Path) -> None:
    disk = image_disk(tmp_path, "label: dos\nstart=2048, type=L\n")
    run("sfdisk", "-q", "--no-reread", str(disk), stdin="label: dos\nstart=2048, type=L\n")
    with pytest.raises(ValueError, match="reaches into"):
        configdrive.write(str(disk), DISK, CONTENTS)
