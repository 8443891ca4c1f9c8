"""Reading files out of an ISO 9660 image (the virtual-media boot ISO) with pycdlib."""

from __future__ import annotations

import io

import pycdlib


def iso_files(data: bytes, paths: list[str]) -> dict[str, bytes]:
    """The contents of ``paths`` (Rock Ridge paths, e.g. ``/vmlinuz``) in the ISO ``data``.
    Raises pycdlib's ``PyCdlibInvalidInput`` for a path the image does not hold."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        out = {}
        for path in paths:
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=path)
            out[path] = buf.getvalue()
        return out
    finally:
        iso.close()
