"""Getting an image onto the target disk: download, verify, write.

The image is downloaded to the agent's work directory first, resuming with HTTP Range
after a lost connection (a bounded number of tries), and hashed as it arrives. Only an
image whose checksum matches is written, raw or qcow2, by ``qemu-img convert -n`` (into the
existing disk, not resizing it). Memory stays flat whatever the image size (1 MiB chunks
when downloading, qemu-img's buffers when writing). A failure once writing has begun wipes
the first MiB of the disk, so a half-written disk never boots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = ["ImageError", "disk_size", "download", "wipe_start", "write_image"]

CHUNK = 1 << 20
LOG = logging.getLogger("metalplane.agent")
Progress = Callable[[str, int, int], None]


class ImageError(Exception):
    """The image could not be fetched, did not match its checksum, or was not written."""


def disk_size(disk: str) -> int:
    """Size in bytes of a block device or disk file."""
    fd = os.open(disk, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def download(url: str, dest: Path, algo: str, checksum: str, total: int,
             progress: Progress, attempts: int = 5, headers: dict[str, str] | None = None
             ) -> None:
    """Fetch ``url`` to ``dest`` and verify it. Raises :class:`ImageError`."""
    h = hashlib.new(algo)
    done = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        for attempt in range(1, attempts + 1):
            try:
                hdrs = dict(headers or {})
                if done:
                    hdrs["Range"] = f"bytes={done}-"
                with httpx.stream("GET", url, headers=hdrs, timeout=30) as r:
                    if r.status_code not in (200, 206):
                        raise ImageError(f"{url} answered HTTP {r.status_code}")
                    if done and r.status_code == 200:  # server ignored Range: start over
                        out.seek(0)
                        out.truncate()
                        h, done = hashlib.new(algo), 0
                    # as the bytes arrive: a connection lost mid-chunk keeps what came
                    for chunk in r.iter_bytes():
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        progress("download", done, total)
                if total and done < total:
                    raise httpx.ReadError(f"connection closed at {done} of {total} bytes")
                break
            except httpx.TransportError as exc:
                if attempt == attempts:
                    raise ImageError(f"download of {url} failed after {attempts} attempts: "
                                     f"{exc}") from None
                LOG.warning("download interrupted at %d of %d bytes (%s): resuming from "
                            "there, attempt %d of %d", done, total, exc or type(exc).__name__,
                            attempt + 1, attempts)
                time.sleep(min(2 ** attempt * 0.1, 2))
    got = h.hexdigest()
    if got != checksum.lower():
        raise ImageError(f"image checksum mismatch: expected {algo} {checksum}, got {got}")


def wipe_start(disk: str) -> None:
    """Zero the first MiB (partition table, filesystem superblock): the disk won't boot."""
    fd = os.open(disk, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(CHUNK), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_image(src: Path, disk: str, disk_format: str, limit: int,
                progress: Progress, timeout: float = 3600) -> int:
    """Write the verified image ``src`` (``raw`` or ``qcow2``) to ``disk``; return the bytes
    of disk it covers. ``limit``: bytes of disk it may use; ``timeout`` in seconds.

    Both formats go through ``qemu-img convert -n -f FMT -O raw`` into the existing disk
    (never probing the format): it runs several requests at once and turns runs of zeros
    into write-zeroes requests (a hole punched in a disk file, ``BLKZEROOUT`` on a block
    device) instead of writing them; bench/image.py measured our own 1 MiB copy loop at
    half of qemu-img's speed for a full raw image and a twentieth for a sparse one.
    Progress comes from ``qemu-img -p``. The disk is fsynced before returning.
    Raises :class:`ImageError` (the disk's first MiB is wiped). Source: qemu-img(1)."""
    try:
        if disk_format == "qcow2":
            info = subprocess.run(["qemu-img", "info", "--output=json", "-f", "qcow2",
                                   str(src)], capture_output=True, text=True, timeout=60)
            if info.returncode != 0:
                raise ImageError(f"not a qcow2 image: {info.stderr.strip()}")
            virtual = int(json.loads(info.stdout)["virtual-size"])
            if virtual > limit:
                raise ImageError(f"the image needs {virtual} bytes; the disk has {limit}")
        elif disk_format == "raw":
            virtual = src.stat().st_size
            if virtual > limit:
                raise ImageError(f"the image has {virtual} bytes; the disk has {limit}")
        else:
            raise ImageError(f"disk_format {disk_format!r} is not raw or qcow2")
        progress("write", 0, virtual)
        _convert(src, disk, disk_format, virtual, progress, timeout)
        fd = os.open(disk, os.O_WRONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        progress("write", virtual, virtual)
        return virtual
    except (ImageError, OSError) as exc:
        wipe_start(disk)
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"writing to {disk} failed: {exc}") from None


_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def _convert(src: Path, disk: str, disk_format: str, virtual: int, progress: Progress,
             timeout: float) -> None:
    """``qemu-img convert -p -n``, reporting its percentages as bytes written."""
    proc = subprocess.Popen(["qemu-img", "convert", "-p", "-n", "-f", disk_format, "-O", "raw",
                             str(src), disk], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        last = -1.0
        while chunk := os.read(proc.stdout.fileno(), 4096):
            for match in _PERCENT.finditer(chunk):
                pct = float(match.group(1))
                if pct >= last + 1:  # at most a hundred reports
                    last = pct
                    progress("write", int(virtual * pct / 100), virtual)
        err = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    finally:
        killer.cancel()
    if code != 0:
        raise ImageError(f"qemu-img convert failed ({code}): {err or 'killed after timeout'}")
