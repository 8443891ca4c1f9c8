"""Config drives in cloud-init's OpenStack format, on the last 64 MiB of the disk.

An ISO 9660 image labelled ``config-2`` (with Rock Ridge and Joliet names) holding
``openstack/latest/meta_data.json``, ``network_data.json`` and ``user_data``, built with
pycdlib. Source: cloud-init's "Config Drive" datasource documentation.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pycdlib

__all__ = ["RESERVED", "build", "read", "write"]

RESERVED = 64 << 20  # bytes at the end of the disk kept for the config drive


def build(contents: dict[str, Any]) -> bytes:
    """The ISO image of ``{"meta_data": {...}, "network_data": {...}, "user_data": str}``."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="config-2")
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


def write(disk: str, size: int, contents: dict[str, Any]) -> int:
    """Write the config drive at ``size - RESERVED`` of ``disk``; return the offset.
    Raises ValueError if it does not fit."""
    image = build(contents)
    if len(image) > RESERVED or size < RESERVED:
        raise ValueError("the config drive does not fit in the space kept for it")
    offset = size - RESERVED
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, image, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return offset


def read(disk: str, size: int) -> dict[str, Any]:
    """The contents a config drive at the end of ``disk`` holds. Raises ValueError if
    there is none."""
    with open(disk, "rb") as f:
        f.seek(size - RESERVED)
        region = io.BytesIO(f.read(RESERVED))
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(region)
    except pycdlib.pycdlibexception.PyCdlibException as exc:
        raise ValueError(f"no config drive on {disk}: {exc}") from None
    out: dict[str, Any] = {}
    try:
        for name, key in (("meta_data.json", "meta_data"),
                          ("network_data.json", "network_data"), ("user_data", "user_data")):
            buf = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(buf, rr_path=f"/openstack/latest/{name}")
            except pycdlib.pycdlibexception.PyCdlibException:
                continue
            text = buf.getvalue().decode()
            out[key] = json.loads(text) if name.endswith(".json") else text
    finally:
        iso.close()
    return out
