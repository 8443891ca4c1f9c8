"""What the ramdisk and image builders share: running a build step, the cache's lock and
pruning, checksums, and putting results where the boot server serves them.

Must not touch anything outside the cache directory and ``<data_dir>/files``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from metalplane.common.files import private_dir

__all__ = ["EPOCH", "BuildError", "epoch", "install_files", "locked", "prune_cache", "run",
           "sha256_file"]

EPOCH = 1735689600  # 2025-01-01T00:00:00Z: every mtime (SOURCE_DATE_EPOCH overrides)


class BuildError(RuntimeError):
    """The build cannot go on; the message says what to do (a tool missing, not root, a
    command that failed with its last lines)."""


def inputs_key(inputs: Any) -> str:
    """24 hex digits of the SHA-256 of ``inputs`` (a dataclass) as canonical JSON: equal
    inputs, equal key; any change (a package version, one byte of a source), another."""
    blob = json.dumps(dataclasses.asdict(inputs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def epoch() -> int:
    """``$SOURCE_DATE_EPOCH`` if set, else :data:`EPOCH` (seconds since 1970)."""
    return int(os.environ.get("SOURCE_DATE_EPOCH") or EPOCH)


def run(cmd: list[str], what: str, timeout: float = 900, **kw: Any) -> str:
    """Run ``cmd``; its stdout. Raises :class:`BuildError` with the last lines of its
    output when it fails or outlives ``timeout`` seconds."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} took more than {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
        raise BuildError(f"{what} failed (exit {proc.returncode}): {' / '.join(tail)}")
    return str(proc.stdout)


@contextlib.contextmanager
def locked(cache_dir: Path, timeout: float = 1800) -> Iterator[None]:
    """Hold ``<cache_dir>/.lock``: one build at a time per cache (bounded wait; raises
    :class:`BuildError` after ``timeout`` seconds)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BuildError(f"another build held {cache_dir} for {timeout:.0f} s"
                                     ) from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def install_files(files: list[tuple[Path, str]], files_dir: Path) -> list[Path]:
    """Put each ``(source, name)`` at ``files_dir/name``, where the boot server serves it
    (a hard link, else a copy; each replaced atomically); the paths. A data directory
    made here is private (mode 0700), as the server makes it: it will hold the key and
    database too."""
    if not files_dir.parent.exists():
        private_dir(files_dir.parent)
    files_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for src, name in files:
        dest, tmp = files_dir / name, files_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        out.append(dest)
    return out


def prune_cache(cache_dir: Path, keep: str, count: int = 3) -> None:
    """Keep entry ``keep`` and the newest others, ``count`` in all (by their manifest's
    mtime); remove interrupted builds' work directories."""
    entries = sorted((p for p in cache_dir.iterdir()
                      if p.is_dir() and (p / "manifest.json").is_file() and p.name != keep),
                     key=lambda p: (p / "manifest.json").stat().st_mtime, reverse=True)
    for old in entries[count - 1:]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in cache_dir.glob("build-*"):
        shutil.rmtree(stale, ignore_errors=True)


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
