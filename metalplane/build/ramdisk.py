"""``metalplane ramdisk build``: the agent's kernel and initramfs, from Debian packages.

What goes in (docs/ramdisk.md): a root file system by ``mmdebstrap --variant=essential``
with python3, the agent's Python dependencies from Debian (python3-httpx, python3-pycdlib),
qemu-utils, util-linux, fdisk (sfdisk), gdisk, iproute2, isc-dhcp-client and kmod; the
agent's own source (``metalplane/agent``, nothing else of metalplane) with a
``metalplane-agent`` launcher; an ``/init`` (``metalplane/build/data/init``) that runs the
agent as PID 1's service; and, from ``linux-image-cloud-amd64``, the kernel and the modules
of virtual hardware (virtio PCI, net, block, SCSI, RNG; SCSI disks and CD-ROMs) with their
dependencies. Docs, man pages, locales, ``__pycache__`` and the Python packages Debian's
httpx brings only for its command line are left out.

Reproducible: ``SOURCE_DATE_EPOCH`` for mmdebstrap, every mtime set to it, no machine-id,
no host resolv.conf/hostname, a newc cpio of the sorted file list with renumbered inodes
(GNU cpio ``--reproducible``), compressed by zstd. Cached under ``<cache_dir>/<key>``, where
the key hashes every input: the sources, the version of every package the build installs
(resolved from those sources with a private apt, :mod:`metalplane.build.apt`), the kernel
package's version, the module list, the agent's source and this builder's own source
(with the init script). The boot server serves ``<data_dir>/files/agent.kernel`` and
``agent.initramfs``, the defaults of the iPXE script and virtual media: a build puts the
result there.

Needs root (mmdebstrap's root mode, chroot) and Debian's mmdebstrap, cpio, zstd, kmod.
Must not touch the host's apt state or anything outside its cache and ``<data_dir>/files``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from metalplane.build import common
from metalplane.build.apt import DEFAULT_SOURCES, AptError, PrivateApt
from metalplane.build.common import (
    BuildError,
    epoch,
    install_files,
    locked,
    prune_cache,
    run,
    sha256_file,
)

__all__ = ["BuildError", "Inputs", "Result", "agent_source_hash", "build", "resolve_inputs"]

BUILD_VERSION = "1"  # bump when the recipe changes in a way the source hash cannot see
KERNEL_PACKAGE = "linux-image-cloud-amd64"
# What the agent and its init use: python3 and the agent's imports (httpx, pycdlib),
# qemu-img (qcow2 images), sfdisk/blkid (the config drive's partition), gdisk, ip, dhclient,
# modprobe, mount.
PACKAGES = (
    "python3", "python3-httpx", "python3-pycdlib", "qemu-utils", "util-linux", "fdisk",
    "gdisk", "iproute2", "isc-dhcp-client", "kmod", "mount", "ca-certificates",
)
# Brought by Debian's python3-httpx for its command line (rich, pygments, click), by
# python3-pycdlib for its own tools (genisoimage, libmagic's 8 MiB database), and by the
# essential set's usrmerge (perl, 40 MiB; /usr is merged already): the agent uses none.
PURGE = (
    "python3-pygments", "python3-rich", "python3-markdown-it", "python3-mdurl",
    "python3-click", "python3-colorama", "python3-pkg-resources", "genisoimage",
    "libmagic1", "libmagic-mgc", "usrmerge", "libfile-find-rule-perl",
    "libnumber-compare-perl", "libtext-glob-perl", "perl", "perl-modules-5.36",
    "libperl5.36", "libgdbm-compat4", "libgdbm6",
)
# The kernel modules of QEMU's virtual hardware (the cloud kernel has no e1000 or AHCI);
# their dependencies come along (modprobe --show-depends).
MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "virtio_rng", "sd_mod",
           "sr_mod")
DOC_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*",
                "/usr/share/locale/*", "/usr/share/lintian/*", "/usr/share/bash-completion/*")
PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
         "usr/share/lintian", "usr/share/bash-completion", "usr/lib/x86_64-linux-gnu/gconv",
         "var/cache", "var/lib/apt/lists", "var/log", "etc/machine-id", "etc/resolv.conf",
         "etc/hostname", "var/lib/dbus/machine-id",
         "usr/bin/qemu-io", "usr/bin/qemu-nbd", "usr/bin/qemu-storage-daemon")
ZSTD_LEVEL = 12  # 42 MiB in 7 s on 2 cores; -19: 37 MiB in 45 s
KERNEL_NAME, INITRAMFS_NAME = "agent.kernel", "agent.initramfs"
_DATA = Path(__file__).with_name("data")
_AGENT_ROOT = Path(__file__).resolve().parents[1]  # the metalplane package's directory

Progress = Callable[[str], None]


def agent_source_hash(package_dir: Path = _AGENT_ROOT) -> str:
    """SHA-256 (hex) of what the ramdisk carries of metalplane: ``__init__.py`` and every
    ``.py`` file under ``agent/`` of the package at ``package_dir``, paths included."""
    h = hashlib.sha256()
    files = [package_dir / "__init__.py", *sorted((package_dir / "agent").rglob("*.py"))]
    for path in files:
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def recipe_hash() -> str:
    """SHA-256 (hex) of the builder itself: this module, the private apt, the shared
    helpers and the init."""
    h = hashlib.sha256(BUILD_VERSION.encode())
    here = Path(__file__)
    for path in (here, here.with_name("apt.py"), here.with_name("common.py"), _DATA / "init"):
        h.update(path.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Inputs:
    """Everything a build's result depends on; :meth:`key` is its content hash."""

    sources: tuple[str, ...]
    packages: dict[str, str]  # every package installed: name -> version
    kernel: tuple[str, str]  # (linux-image-<abi>-cloud-amd64, version)
    agent: str  # agent_source_hash()
    recipe: str  # recipe_hash()
    modules: tuple[str, ...] = MODULES
    compression: str = f"zstd-{ZSTD_LEVEL}"
    arch: str = "amd64"

    def key(self) -> str:
        """24 hex digits of the SHA-256 of the inputs (:func:`common.inputs_key`)."""
        return common.inputs_key(self)


@dataclass
class Result:
    """A built (or cached) ramdisk: its key, files, sizes in bytes and build time in s."""

    key: str
    kernel: Path
    initramfs: Path
    cached: bool
    seconds: float
    manifest: dict[str, Any] = field(default_factory=dict)
    installed: list[Path] = field(default_factory=list)


def check_host() -> None:
    """Raise :class:`BuildError` unless this machine can build: root, and the tools."""
    if os.geteuid() != 0:
        raise BuildError("ramdisk build needs root: mmdebstrap builds the root file system "
                         "as root and the build chroots into it")
    tools = {"mmdebstrap": "mmdebstrap", "cpio": "cpio", "zstd": "zstd", "apt-get": "apt",
             "dpkg-deb": "dpkg", "depmod": "kmod", "modprobe": "kmod", "chroot": "coreutils"}
    missing = sorted({pkg for tool, pkg in tools.items() if not shutil.which(tool)})
    if missing:
        raise BuildError(f"ramdisk build needs the Debian packages {', '.join(missing)} "
                         "(scripts/setup.sh installs them)")


def resolve_inputs(apt: PrivateApt) -> Inputs:
    """Resolve the versions of what a build would install now, from ``apt``'s sources
    (call ``apt.update()`` first). Raises AptError."""
    packages = apt.resolve(["?essential", *PACKAGES])
    kernel_closure = apt.resolve([KERNEL_PACKAGE])
    kernels = sorted((n, v) for n, v in kernel_closure.items()
                     if re.fullmatch(r"linux-image-\d.*-cloud-amd64", n))
    if not kernels:
        raise AptError(f"{KERNEL_PACKAGE} resolves to no kernel image package")
    return Inputs(sources=apt.sources, packages=packages, kernel=kernels[-1],
                  agent=agent_source_hash(), recipe=recipe_hash(), arch=apt.arch)


def build(data_dir: Path, cache_dir: Path | None = None,
          sources: tuple[str, ...] = DEFAULT_SOURCES, force: bool = False,
          install: bool = True, progress: Progress = lambda _: None) -> Result:
    """Build the ramdisk, or take it from the cache, and (``install``) put it in
    ``<data_dir>/files``. ``cache_dir`` defaults to ``<data_dir>/ramdisk``.

    Raises :class:`BuildError` (and :class:`~metalplane.build.apt.AptError` as one).
    """
    check_host()
    started = time.monotonic()
    cache_dir = cache_dir or data_dir / "ramdisk"
    with locked(cache_dir):
        apt = PrivateApt(cache_dir / "apt", sources)
        progress(f"resolving packages from {len(apt.sources)} apt source(s)")
        try:
            apt.update()
            inputs = resolve_inputs(apt)
        except AptError as exc:
            raise BuildError(str(exc)) from None
        key = inputs.key()
        entry = cache_dir / key
        if (entry / "manifest.json").is_file() and not force:
            progress(f"cache hit: {entry}")
            result = _result(entry, cached=True, seconds=time.monotonic() - started)
        else:
            progress(f"building {key}: {len(inputs.packages)} packages, kernel "
                     f"{inputs.kernel[0]} {inputs.kernel[1]}")
            work = cache_dir / f"build-{key}-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            try:
                _build(inputs, apt, work, progress)
                manifest = json.loads((work / "out" / "manifest.json").read_text())
                manifest["build_seconds"] = round(time.monotonic() - started, 1)
                (work / "out" / "manifest.json").write_text(json.dumps(manifest, indent=2))
                shutil.rmtree(entry, ignore_errors=True)
                os.replace(work / "out", entry)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            result = _result(entry, cached=False, seconds=time.monotonic() - started)
        os.utime(entry / "manifest.json")  # the newest use: kept by the pruning
        prune_cache(cache_dir, key)
        if install:
            result.installed = install_files([(result.kernel, KERNEL_NAME),
                                              (result.initramfs, INITRAMFS_NAME)],
                                             data_dir / "files")
            progress(f"installed in {data_dir / 'files'}")
    return result


def _result(entry: Path, cached: bool, seconds: float) -> Result:
    manifest = json.loads((entry / "manifest.json").read_text())
    return Result(key=manifest["key"], kernel=entry / KERNEL_NAME,
                  initramfs=entry / INITRAMFS_NAME, cached=cached, seconds=seconds,
                  manifest=manifest)


def _build(inputs: Inputs, apt: PrivateApt, work: Path, progress: Progress) -> None:
    root, out = work / "root", work / "out"
    out.mkdir(parents=True)
    when = epoch()
    suite = apt.sources[0].split()[2]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
           "SOURCE_DATE_EPOCH": str(when)}

    progress("mmdebstrap: the root file system")
    cmd = ["mmdebstrap", "--variant=essential", "--mode=root", "--quiet",
           f"--include={','.join(PACKAGES)}", "--aptopt=APT::Install-Recommends \"false\"",
           *(f"--dpkgopt=path-exclude={p}" for p in DOC_EXCLUDES),
           "--dpkgopt=path-include=/usr/share/doc/*/copyright",
           suite, str(root), str(apt.sources_file)]
    run(cmd, "mmdebstrap", env=env)

    installed = dict(
        line.split("\t") for line in run(
            ["chroot", str(root), "dpkg-query", "-W", "-f=${Package}\t${Version}\n"],
            "dpkg-query", env=env).splitlines())
    drift = sorted(n for n, v in inputs.packages.items()
                   if n in installed and installed[n] != v)
    if drift:
        progress(f"warning: the archive changed during the build ({', '.join(drift[:5])}); "
                 "build again to match the key")
    purge = [p for p in PURGE if p in installed]
    if purge:
        progress(f"leaving out {len(purge)} packages the agent does not use")
        run(["chroot", str(root), "dpkg", "--purge", "--force-depends", *purge],
             "dpkg --purge", env=env)
        for p in purge:
            installed.pop(p, None)

    progress(f"kernel {inputs.kernel[0]} and {len(inputs.modules)} modules")
    abi = _kernel(inputs, apt, work, root, out)

    progress("the agent and /init")
    site = root / "usr/lib/python3/dist-packages/metalplane"
    (site / "agent").mkdir(parents=True)
    shutil.copyfile(_AGENT_ROOT / "__init__.py", site / "__init__.py")
    for src in sorted((_AGENT_ROOT / "agent").rglob("*.py")):
        dest = site / src.relative_to(_AGENT_ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    launcher = root / "usr/bin/metalplane-agent"
    launcher.write_text("#!/usr/bin/python3\nimport sys\n\n"
                        "from metalplane.agent.main import main\n\nsys.exit(main())\n")
    launcher.chmod(0o755)
    shutil.copyfile(_DATA / "init", root / "init")
    (root / "init").chmod(0o755)
    key = inputs.key()
    (root / "etc/metalplane-ramdisk.id").write_text(f"metalplane ramdisk {key}\n")

    progress("pruning docs, locales, caches, __pycache__")
    for rel in PRUNE:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            path.mkdir()
        elif path.exists() or path.is_symlink():
            path.unlink()
    for cache in sorted(root.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    (root / "etc/hostname").write_text("metalplane-ramdisk\n")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (when, when), follow_symlinks=False)

    progress(f"cpio + zstd -{ZSTD_LEVEL}")
    initramfs = out / INITRAMFS_NAME
    with open(initramfs, "wb") as f:
        find = subprocess.Popen(["find", ".", "-print0"], cwd=root, stdout=subprocess.PIPE,
                                env=env)
        sort = subprocess.Popen(["sort", "-z"], stdin=find.stdout, stdout=subprocess.PIPE,
                                env={**env, "LC_ALL": "C"})
        cpio = subprocess.Popen(["cpio", "--null", "--create", "--format=newc",
                                 "--reproducible", "--quiet"], cwd=root, stdin=sort.stdout,
                                stdout=subprocess.PIPE, env=env)
        zstd = subprocess.Popen(["zstd", "-q", f"-{ZSTD_LEVEL}", "-T2", "-c"],
                                stdin=cpio.stdout, stdout=f, env=env)
        for stage in (find, sort, cpio):
            assert stage.stdout is not None
            stage.stdout.close()  # only the next one in the pipe holds it
        codes = [stage.wait(timeout=900) for stage in (find, sort, cpio, zstd)]
    if any(codes):
        raise BuildError(f"find | sort | cpio | zstd failed: exit codes {codes}")

    manifest = {
        "key": key, "kernel_version": abi, "inputs": asdict(inputs),
        "installed": dict(sorted(installed.items())),
        "files": {name: {"size": (out / name).stat().st_size,
                         "sha256": sha256_file(out / name)}
                  for name in (KERNEL_NAME, INITRAMFS_NAME)},
        "unpacked_bytes": sum(p.lstat().st_size for p in root.rglob("*")),
        "source_date_epoch": when,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _kernel(inputs: Inputs, apt: PrivateApt, work: Path, root: Path, out: Path) -> str:
    """The kernel image to ``out``, the modules (with their dependencies) into ``root``;
    the kernel's ABI name (``uname -r``)."""
    name, version = inputs.kernel
    try:
        deb = apt.download(f"{name}={version}", work / "debs")
    except AptError as exc:
        raise BuildError(str(exc)) from None
    kdir = work / "kernel"
    run(["dpkg-deb", "-x", str(deb), str(kdir)], "dpkg-deb -x")
    abi = name.removeprefix("linux-image-")
    moddir = kdir / "lib/modules" / abi
    if not moddir.is_dir():
        raise BuildError(f"{deb.name} has no lib/modules/{abi}")
    run(["depmod", "-b", str(kdir), abi], "depmod")
    wanted: list[str] = []
    for module in inputs.modules:
        for line in run(["modprobe", "-d", str(kdir), "-S", abi, "--show-depends", module],
                         f"modprobe --show-depends {module}").splitlines():
            if line.startswith("insmod ") and line.split()[1] not in wanted:
                wanted.append(line.split()[1])
    dest = root / "usr/lib/modules" / abi
    for path in wanted:
        rel = Path(path).relative_to(moddir)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)
    for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (moddir / meta).is_file():
            shutil.copyfile(moddir / meta, dest / meta)
    run(["depmod", "-b", str(root), abi], "depmod (ramdisk)")
    shutil.copyfile(kdir / "boot" / f"vmlinuz-{abi}", out / KERNEL_NAME)
    return abi
