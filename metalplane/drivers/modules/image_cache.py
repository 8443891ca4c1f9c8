"""The boot server's image cache: images fetched once, checked, and served to agents.

An image is named by its checksum (content-addressed), so two nodes deploying the same
image share one copy and a changed image can never be served under an old checksum.
Checksums are ``sha256`` or ``sha512`` (``algo:hex``, or bare hex whose length says the
algorithm); MD5 is refused. Sources are ``http(s)://`` URLs, ``file://`` URLs or absolute
paths. Copies stream in 1 MiB chunks, so memory does not grow with the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import urllib.parse
import uuid
from pathlib import Path

import httpx

from metalplane.common.exceptions import Invalid

__all__ = ["CachedImage", "cache_image", "parse_checksum"]

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class CachedImage:
    name: str
    path: Path
    algo: str
    checksum: str
    size: int


def parse_checksum(value: str, algo: str | None = None) -> tuple[str, str]:
    """``(algo, hex)`` from ``"sha256:ab.."``, or bare hex (64 → sha256, 128 → sha512).
    Raises :class:`Invalid`."""
    text = str(value or "").strip().lower()
    if ":" in text:
        algo, _, text = text.partition(":")
    if not text or any(c not in "0123456789abcdef" for c in text):
        raise Invalid(f"image_checksum '{value}' is not a hex digest")
    algo = (algo or {64: "sha256", 128: "sha512"}.get(len(text), "")).lower()
    if algo not in ("sha256", "sha512"):
        raise Invalid(f"image_checksum: algorithm '{algo or 'unknown'}' is not supported; "
                      "use sha256 or sha512")
    if len(text) != (64 if algo == "sha256" else 128):
        raise Invalid(f"image_checksum is not a {algo} digest (wrong length)")
    return algo, text


def cache_image(cache_dir: Path, source: str, checksum: str,
                algo: str | None = None) -> CachedImage:
    """Fetch ``source`` into ``cache_dir`` (unless there already) and verify it.

    Raises :class:`Invalid` for a bad source, an unreachable URL or a checksum mismatch
    (the partial copy is removed).
    """
    algo, expected = parse_checksum(checksum, algo)
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = f"{algo}-{expected[:32]}.img"
    final = cache_dir / name
    # Nodes deployed together with one image fetch it once; the others wait for it.
    with _lock_for(final):
        if final.exists():
            return CachedImage(name, final, algo, expected, final.stat().st_size)
        return _fetch(source, final, algo, expected)


def _fetch(source: str, final: Path, algo: str, expected: str) -> CachedImage:
    name = final.name
    cache_dir = final.parent
    tmp = cache_dir / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
    h = hashlib.new(algo)
    parsed = urllib.parse.urlsplit(source)
    try:
        with open(tmp, "wb") as out:
            if parsed.scheme in ("http", "https"):
                try:
                    with httpx.stream("GET", source, timeout=60, follow_redirects=True) as r:
                        if r.status_code != 200:
                            raise Invalid(f"image_source {source} answered HTTP {r.status_code}")
                        for chunk in r.iter_bytes(CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                except httpx.HTTPError as exc:
                    raise Invalid(f"image_source {source} could not be fetched: {exc}") from None
            elif parsed.scheme in ("file", ""):
                path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme else source)
                if not path.is_absolute() or not path.is_file():
                    raise Invalid(f"image_source {source} is not an existing absolute path")
                with open(path, "rb") as src:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
            else:
                raise Invalid(f"image_source {source}: scheme '{parsed.scheme}' is not "
                              "supported (http, https, file)")
        got = h.hexdigest()
        if got != expected:
            raise Invalid(f"image checksum mismatch for {source}: expected {algo} {expected}, "
                          f"got {got}")
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return CachedImage(name, final, algo, expected, final.stat().st_size)


