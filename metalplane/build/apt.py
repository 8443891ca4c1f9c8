"""A private apt: Debian's package lists for a build, kept apart from the host's own.

The lists, the versions a build resolves and the packages it downloads come from the
sources the build names (default: Debian bookworm, its updates and security), in a
directory of their own; the host's /etc/apt and /var/lib/apt are neither read nor changed.
Source: apt.conf(5) (``Dir::*``), apt-get(8) (``-s``: simulate, ``download``) and
apt-patterns(7) (``?essential``). This module must not install anything on the host.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

__all__ = ["DEFAULT_SOURCES", "AptError", "PrivateApt"]

DEFAULT_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
_INST = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ")


class AptError(RuntimeError):
    """apt-get failed (lists not reachable, a package unknown); the message says which."""


class PrivateApt:
    """apt-get with its own sources, lists and download cache under ``root``.

    ``sources`` are one-line ``deb URI SUITE COMPONENTS`` entries (sources.list(5)).
    """

    def __init__(self, root: Path, sources: tuple[str, ...] = DEFAULT_SOURCES,
                 arch: str = "amd64") -> None:
        self.root = root
        self.sources = tuple(sources)
        self.arch = arch
        for sub in ("lists/partial", "archives/partial", "etc/parts", "etc/prefs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "etc" / "sources.list").write_text("\n".join(self.sources) + "\n")
        conf = {
            "Dir::Etc::SourceList": root / "etc" / "sources.list",
            "Dir::Etc::SourceParts": root / "etc" / "parts",
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": root / "etc" / "prefs",
            "Dir::State": root,
            "Dir::State::Lists": root / "lists",
            "Dir::State::status": "/dev/null",
            "Dir::Cache": root,
            "Dir::Cache::archives": root / "archives",
            "APT::Architecture": arch,
            "APT::Architectures": arch,
            "APT::Install-Recommends": "false",
            "APT::Sandbox::User": "root",
        }
        self.conf = root / "apt.conf"
        self.conf.write_text("".join(f'{k} "{v}";\n' for k, v in conf.items()))

    @property
    def sources_file(self) -> Path:
        """The sources.list (what mmdebstrap is given, so both see the same archive)."""
        return self.root / "etc" / "sources.list"

    def _run(self, *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
        proc = subprocess.run(["apt-get", "-q", *args], capture_output=True, text=True,
                              cwd=cwd, timeout=timeout,
                              env={"APT_CONFIG": str(self.conf), "LC_ALL": "C",
                                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        if proc.returncode != 0:
            detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
            raise AptError(f"apt-get {args[0]} failed: {' / '.join(detail)}")
        return proc.stdout

    def update(self) -> None:
        """Fetch the lists (only what changed since the last update). Raises AptError."""
        self._run("update")

    def resolve(self, packages: list[str]) -> dict[str, str]:
        """``{package: version}`` of everything installing ``packages`` (apt patterns such
        as ``?essential`` allowed) on an empty system brings in, without recommends.
        Raises AptError (e.g. a package unknown to the sources)."""
        out = self._run("install", "-s", "--no-install-recommends", *packages)
        found = {}
        for line in out.splitlines():
            m = _INST.match(line)
            if m:
                found[m.group(1)] = m.group(2)
        return found

    def download(self, package: str, dest: Path) -> Path:
        """Download ``package``'s .deb (``name`` or ``name=version``) into ``dest``; its
        path. Raises AptError."""
        dest.mkdir(parents=True, exist_ok=True)
        self._run("download", package, cwd=dest)
        new = sorted(dest.glob(f"{package.partition('=')[0]}_*.deb"))
        if not new:
            raise AptError(f"apt-get download {package} left no .deb")
        return new[-1]
