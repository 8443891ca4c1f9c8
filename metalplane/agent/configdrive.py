"""Config drives in cloud-init's OpenStack format, as a partition labelled ``config-2``
at the end of the disk.

The drive is an ISO 9660 image labelled ``config-2`` (with Rock Ridge and Joliet names)
holding ``openstack/latest/meta_data.json``, ``network_data.json`` and ``user_data``,
built with pycdlib. Source: cloud-init's "Config Drive" datasource documentation, which
finds the drive as a block device (a partition) whose filesystem label is ``config-2``
(``ds-identify`` asks blkid for ``LABEL=config-2`` and ``TYPE=iso9660`` or ``vfat``).

It is written the way ironic-python-agent does for whole-disk images
(``create_config_drive_partition``): after the image is on the disk, a partition is added
in the last ``RESERVED`` bytes (64 MiB, the space the image write leaves free) and the ISO
is written into it; the partition table stays valid:

- GPT: the backup header is first moved to the end of the disk (the image was usually
  smaller than the disk; IPA runs ``sgdisk -e``, we ``sfdisk --relocate gpt-bak-std``),
  then the partition is added up to the last usable sector;
- MBR: a primary partition is added; a table whose four primary slots are taken is
  refused, as IPA does; on a disk over 2 TiB the partition ends at the MBR's 2 TiB limit;
- no partition table (a filesystem written to the whole disk, as the lab's ext4 images
  are): IPA refuses such a disk. We write a new MBR holding only the config drive's
  partition, but only when the first sector is all zeros, so the table takes nothing the
  filesystem uses (ext2/3/4 leave their first 1 KiB free); anything else is refused;
- a partition already labelled ``config-2`` (the image brought one) is reused, as IPA
  does, if the ISO fits in it.

Partition tables are read (``sfdisk --json``) and written (a script on stdin) with
util-linux's ``sfdisk``; filesystems are probed with ``blkid -p`` at the partition's byte
offset, which needs no partition device nodes (none exist for a disk file, nor without
udev). Errors: ``ValueError`` when the drive does not fit, the table cannot take another
partition, or the disk holds no config drive (``read``); ``OSError`` from the disk.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any, BinaryIO

import pycdlib

__all__ = ["LABEL", "RESERVED", "Partition", "build", "find", "partitions", "probe", "read",
           "read_iso", "table", "write"]

RESERVED = 64 << 20  # bytes at the end of the disk kept for the config drive
LABEL = "config-2"
ALIGN = 1 << 20  # partitions start on a MiB, as fdisk and parted place them
MBR_MAX_SECTORS = 1 << 32  # an MBR entry addresses 2^32 sectors (2 TiB of 512 bytes)
TIMEOUT = 60.0


@dataclass(frozen=True)
class Partition:
    """A partition of the disk, in bytes from the disk's start."""

    number: int
    offset: int
    size: int


def build(contents: dict[str, Any]) -> bytes:
    """The ISO image of ``{"meta_data": {...}, "network_data": {...}, "user_data": str}``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=LABEL)
    iso.add_directory("/OPENSTACK", rr_name="openstack", joliet_path="/openstack")
    iso.add_directory("/OPENSTACK/LATEST", rr_name="latest", joliet_path="/openstack/latest")
    files = {"meta_data.json": json.dumps(contents.get("meta_data") or {}, indent=1),
             "network_data.json": json.dumps(contents.get("network_data") or {}, indent=1)}
    if contents.get("user_data"):
        files["user_data"] = str(contents["user_data"])
    for n, (name, text) in enumerate(sorted(files.items())):
        data = text.encode()
        iso.add_fp(io.BytesIO(data), len(data), f"/OPENSTACK/LATEST/F{n}.;1", rr_name=name,
                   joliet_path=f"/openstack/latest/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def _sfdisk(disk: str, *args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["sfdisk", *args, disk], input=script, capture_output=True,
                              text=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        raise ValueError("sfdisk is not installed (Debian package fdisk)") from None


def _change(disk: str, *args: str, script: str | None = None) -> None:
    """Rewrite ``disk``'s table; never wipe a signature (the image's filesystems stay)."""
    proc = _sfdisk(disk, "--no-reread", "--wipe", "never", "--wipe-partitions", "never",
                   *args, script=script)
    if proc.returncode != 0:
        raise ValueError(f"sfdisk {' '.join(args)} {disk} failed: "
                         f"{(proc.stderr or proc.stdout).strip()}")


def table(disk: str) -> dict[str, Any] | None:
    """``sfdisk --json``'s ``partitiontable`` of ``disk``, or None if it has none."""
    proc = _sfdisk(disk, "--json")
    if proc.returncode != 0:
        if "does not contain a recognized partition table" in proc.stderr:
            return None
        raise ValueError(f"cannot read the partition table of {disk}: {proc.stderr.strip()}")
    got: dict[str, Any] = json.loads(proc.stdout)["partitiontable"]
    return got


def _number(disk: str, node: str) -> int:
    m = re.search(r"(\d+)$", node[len(disk):] if node.startswith(disk) else node)
    if m is None:
        raise ValueError(f"sfdisk named a partition of {disk} {node!r}")
    return int(m.group(1))


def partitions(disk: str, pt: dict[str, Any] | None = None) -> list[Partition]:
    """The partitions of ``disk`` (none if it has no table), in table order."""
    pt = table(disk) if pt is None else pt
    if pt is None:
        return []
    sector = int(pt.get("sectorsize") or 512)
    return [Partition(_number(disk, p["node"]), int(p["start"]) * sector,
                      int(p["size"]) * sector) for p in pt.get("partitions", [])]


def probe(disk: str, part: Partition) -> dict[str, str]:
    """What ``blkid -p`` finds in ``part`` (``LABEL``, ``TYPE``...); empty if nothing."""
    proc = subprocess.run(["blkid", "-p", "-O", str(part.offset), "-S", str(part.size),
                           "-o", "export", disk], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    if proc.returncode not in (0, 2):  # 2: nothing found
        raise ValueError(f"blkid cannot probe {disk} at {part.offset}: {proc.stderr.strip()}")
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


def find(disk: str) -> Partition | None:
    """The partition of ``disk`` labelled ``config-2``, as ds-identify looks for it (by
    label, whatever the case). Raises ValueError if there are several."""
    found = [p for p in partitions(disk) if probe(disk, p).get("LABEL", "").lower() == LABEL]
    if len(found) > 1:
        raise ValueError(f"{disk} has {len(found)} partitions labelled {LABEL}: "
                         f"{', '.join(str(p.number) for p in found)}")
    return found[0] if found else None


def _create(disk: str, size: int) -> Partition:
    """Add the config drive's partition in the last RESERVED bytes of ``disk``."""
    pt = table(disk)
    if pt is None:
        with open(disk, "rb") as f:
            first = f.read(512)
        if first.strip(b"\0"):
            raise ValueError(f"{disk} has no partition table and its first sector is in use "
                             "(a filesystem without one): no room for a config drive partition")
        label, sector, end = "dos", 512, min(size // 512, MBR_MAX_SECTORS)
        before: list[Partition] = []
    else:
        label = pt["label"]
        if label == "gpt":
            # the image was smaller than the disk: its backup header is where the image
            # ended, inside the space kept for us; move it to the disk's end first
            _change(disk, "--relocate", "gpt-bak-std")
            pt = table(disk)
            assert pt is not None
        elif label != "dos":
            raise ValueError(f"{disk} has a {label} partition table: only gpt and dos are "
                             "supported")
        sector = int(pt.get("sectorsize") or 512)
        before = partitions(disk, pt)
        if label == "gpt":
            end = int(pt["lastlba"]) + 1
        else:
            primaries = [p for p in before if p.number <= 4]
            if len(primaries) >= 4:
                raise ValueError(f"{disk} uses MBR and its four primary partitions are taken:"
                                 " no room for a config drive partition")
            end = min(size // sector, MBR_MAX_SECTORS)
    # the partition starts on a MiB boundary, no earlier than the space kept for it
    # (below the 2 TiB an MBR can address on a bigger disk, as IPA places it)
    start = -(-(end * sector - RESERVED) // ALIGN) * ALIGN // sector
    if start <= 0 or end <= start:
        raise ValueError(f"{disk} is too small for a config drive partition")
    clash = [p for p in before if p.offset + p.size > start * sector]
    if clash:
        raise ValueError(f"partition {clash[0].number} of {disk} reaches into the "
                         f"{RESERVED >> 20} MiB kept for the config drive")
    line = f"start={start}, size={end - start}, type=L"
    if label == "gpt":
        _change(disk, "--append", script=f"{line}, name={LABEL}\n")
    elif pt is None:
        _change(disk, script=f"label: dos\n{line}\n")
    else:
        _change(disk, "--append", script=f"{line}\n")
    made = [p for p in partitions(disk) if p.offset == start * sector]
    if len(made) != 1:
        raise ValueError(f"the config drive partition of {disk} is not in its table after "
                         "sfdisk wrote it")
    return made[0]


def write(disk: str, size: int, contents: dict[str, Any]) -> Partition:
    """Write the config drive of ``contents`` onto ``disk`` (``size`` bytes, the image
    already on it) into a partition labelled by its ISO as ``config-2``; return that
    partition. Raises ValueError if it does not fit or the table takes no partition."""
    image = build(contents)
    if len(image) > RESERVED or size < RESERVED:
        raise ValueError("the config drive does not fit in the space kept for it")
    part = find(disk) or _create(disk, size)
    if part.size < len(image):  # a reused one, or a new one shrunk by alignment or GPT
        raise ValueError(f"the config drive ({len(image)} bytes) does not fit in "
                         f"partition {part.number} of {disk} ({part.size} bytes)")
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, image, part.offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return part


def read(disk: str, size: int) -> dict[str, Any]:
    """The contents of the config drive on ``disk`` (``size`` bytes): the partition
    labelled ``config-2``, found as ds-identify finds it. Raises ValueError if there is
    none."""
    part = find(disk)
    if part is None or part.offset + part.size > size:
        raise ValueError(f"no config drive on {disk}: no partition labelled {LABEL}")
    with open(disk, "rb") as f:
        f.seek(part.offset)
        region = io.BytesIO(f.read(part.size))
    try:
        return read_iso(region)
    except ValueError as exc:
        raise ValueError(f"no config drive on {disk}: {exc}") from None


def read_iso(fp: BinaryIO) -> dict[str, Any]:
    """The contents of the config drive ISO in ``fp`` (a seekable binary file):
    ``meta_data`` and ``network_data`` (dicts) and ``user_data`` (str), each present only
    if its file (``openstack/latest/...``) is. Also reads an ISO that holds more (the
    virtual media boot ISO labelled ``config-2``). Raises ValueError if ``fp`` is no ISO
    9660 image or a JSON file does not parse."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(fp)
    except pycdlib.pycdlibexception.PyCdlibException as exc:
        raise ValueError(f"not an ISO 9660 image: {exc}") from None
    out: dict[str, Any] = {}
    try:
        for name, key in (("meta_data.json", "meta_data"),
                          ("network_data.json", "network_data"), ("user_data", "user_data")):
            buf = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(buf, rr_path=f"/openstack/latest/{name}")
            except pycdlib.pycdlibexception.PyCdlibException:
                continue
            text = buf.getvalue().decode(errors="replace")
            try:
                out[key] = json.loads(text) if name.endswith(".json") else text
            except ValueError:
                raise ValueError(f"openstack/latest/{name} is not JSON") from None
    finally:
        iso.close()
    return out
