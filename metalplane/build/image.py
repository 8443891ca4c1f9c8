"""``metalplane image build debian``: a whole-disk Debian 12 image that configures itself
with cloud-init from a ``config-2`` config drive.

The image (docs/ramdisk.md, "The OS image"), an MBR disk that boots in BIOS and UEFI mode:

- partition 1 (ext4, label ``root``, active) holds ``mmdebstrap --variant=minbase`` of
  bookworm with systemd, udev, ``linux-image-cloud-amd64`` (its initramfs by
  initramfs-tools), cloud-init (datasources ConfigDrive then None), ifupdown +
  isc-dhcp-client + ifenslave (cloud-init's ENI renderer, bonds included), openssh-server,
  iputils-ping, sudo and GRUB's EFI modules (``grub-efi-amd64-bin``);
- BIOS: extlinux boots it (syslinux's MBR code, ``extlinux --install`` on the mounted
  partition);
- UEFI: partition 2 is an EFI system partition (MBR type ``0xEF``, FAT16, label ``EFI``)
  holding only ``/EFI/BOOT/BOOTX64.EFI`` (the UEFI specification's removable media path):
  a standalone GRUB made by ``grub-mkimage`` in the image's own tree, whose embedded
  configuration finds the root partition by its label and boots the same kernel;
- kernel command line ``root=LABEL=root ro console=tty0 console=ttyS0,115200`` for both.

The agent adds the config drive's partition after the image (MBR slots 3-4 are free).
Given as raw and qcow2, with their SHA-256 in ``SHA256SUMS``.

Cached like the ramdisk (:mod:`metalplane.build.ramdisk`): by a hash of the sources, every
installed package's version and this recipe. The disk steps are deterministic: the file
system is made with ``mkfs.ext4 -d`` at a fixed UUID, hash seed and time
(``E2FSPROGS_FAKE_TIME``), from a tree whose mtimes are clamped to ``SOURCE_DATE_EPOCH``,
without a journal while a mount installs extlinux; debugfs then resets what the mount
stamped (superblock times, extlinux's inode times and generation numbers) and tune2fs adds
the journal. The tree itself is not yet: some maintainer scripts of the packages write
build-time data (two builds of one key still differ).

Needs root (mmdebstrap, a loop mount) and Debian's mmdebstrap, e2fsprogs, fdisk, extlinux,
syslinux-common, dosfstools, mtools, qemu-utils. Must not touch anything outside its cache and
``<data_dir>/files``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
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

__all__ = ["DISTROS", "ImageInputs", "ImageResult", "build"]

BUILD_VERSION = "1"
DISTROS = ("debian",)
NAME = "debian-12"
PACKAGES = ("systemd-sysv", "udev", "linux-image-cloud-amd64", "cloud-init", "ifupdown",
            "isc-dhcp-client", "openssh-server", "sudo", "e2fsprogs", "iputils-ping",
            "ifenslave",  # ifupdown's bonds: what cloud-init renders for a portgroup
            "grub-efi-amd64-bin")  # the UEFI boot loader, made with this tree's grub-mkimage
DOC_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*",
                "/usr/share/locale/*", "/usr/share/lintian/*")
MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
PART_OFFSET = 1 << 20  # the root partition starts at 1 MiB
ESP_MIB = 16  # the EFI system partition, after the root one
KERNEL_ARGS = "root=LABEL=root ro console=tty0 console=ttyS0,115200"
# GRUB's modules in BOOTX64.EFI: what the embedded configuration below needs
GRUB_MODULES = ("part_msdos", "part_gpt", "ext2", "search", "search_label", "linux", "boot",
                "echo", "normal", "efi_gop")
CLOUD_CFG = """\
# metalplane: the config drive (config-2) first, else nothing; no network metadata probes
datasource_list: [ConfigDrive, None]
"""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageInputs:
    """Everything the image depends on; :meth:`key` is its content hash."""

    sources: tuple[str, ...]
    packages: dict[str, str]
    recipe: str
    arch: str = "amd64"

    def key(self) -> str:
        """24 hex digits of the SHA-256 of the inputs (:func:`common.inputs_key`)."""
        return common.inputs_key(self)


@dataclass
class ImageResult:
    """A built (or cached) image: its key, raw and qcow2 files, their checksums file."""

    key: str
    raw: Path
    qcow2: Path
    sums: Path
    cached: bool
    seconds: float
    manifest: dict[str, Any] = field(default_factory=dict)
    installed: list[Path] = field(default_factory=list)


def recipe_hash() -> str:
    """SHA-256 (hex) of this builder, the private apt and the shared helpers."""
    h = hashlib.sha256(BUILD_VERSION.encode())
    here = Path(__file__)
    for path in (here, here.with_name("apt.py"), here.with_name("common.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def check_host() -> None:
    """Raise :class:`BuildError` unless this machine can build: root, and the tools."""
    if os.geteuid() != 0:
        raise BuildError("image build needs root: mmdebstrap's root mode and a loop mount "
                         "to install the boot loader")
    tools = {"mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "debugfs": "e2fsprogs",
             "tune2fs": "e2fsprogs", "sfdisk": "fdisk", "mkfs.fat": "dosfstools",
             "mcopy": "mtools",
             "extlinux": "extlinux", "qemu-img": "qemu-utils", "mount": "mount"}
    missing = sorted({pkg for tool, pkg in tools.items() if not shutil.which(tool)})
    if not MBR.is_file():
        missing.append("syslinux-common")
    if missing:
        raise BuildError(f"image build needs the Debian packages {', '.join(missing)} "
                         "(scripts/setup.sh installs them)")


def build(distro: str, data_dir: Path, cache_dir: Path | None = None,
          sources: tuple[str, ...] = DEFAULT_SOURCES, force: bool = False,
          install: bool = True, progress: Progress = lambda _: None) -> ImageResult:
    """Build the ``distro`` image (only ``debian``: Debian 12), or take it from the cache,
    and (``install``) put it in ``<data_dir>/files`` as ``debian-12.raw``,
    ``debian-12.qcow2`` and ``debian-12.SHA256SUMS``. ``cache_dir`` defaults to
    ``<data_dir>/images-built``. Raises :class:`BuildError`."""
    if distro not in DISTROS:
        raise BuildError(f"image build knows {', '.join(DISTROS)}, not {distro!r}")
    check_host()
    started = time.monotonic()
    cache_dir = cache_dir or data_dir / "images-built"
    with locked(cache_dir):
        apt = PrivateApt(cache_dir / "apt", sources)
        progress(f"resolving packages from {len(apt.sources)} apt source(s)")
        try:
            apt.update()
            packages = apt.resolve(["?essential", "?priority(required)", "apt", *PACKAGES])
        except AptError as exc:
            raise BuildError(str(exc)) from None
        inputs = ImageInputs(sources=apt.sources, packages=packages, recipe=recipe_hash(),
                             arch=apt.arch)
        key = inputs.key()
        entry = cache_dir / key
        cached = (entry / "manifest.json").is_file() and not force
        if cached:
            progress(f"cache hit: {entry}")
        else:
            progress(f"building {key}: {len(packages)} packages")
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
                mnt = work / "mnt"
                if mnt.is_dir() and os.path.ismount(mnt):
                    subprocess.run(["umount", str(mnt)], check=False, timeout=60)
                shutil.rmtree(work, ignore_errors=True)
        os.utime(entry / "manifest.json")
        prune_cache(cache_dir, key)
        manifest = json.loads((entry / "manifest.json").read_text())
        result = ImageResult(key=key, raw=entry / f"{NAME}.raw", qcow2=entry / f"{NAME}.qcow2",
                             sums=entry / "SHA256SUMS", cached=cached,
                             seconds=time.monotonic() - started, manifest=manifest)
        if install:
            result.installed = install_files(
                [(result.raw, f"{NAME}.raw"), (result.qcow2, f"{NAME}.qcow2"),
                 (result.sums, f"{NAME}.SHA256SUMS")], data_dir / "files")
            progress(f"installed in {data_dir / 'files'}")
    return result


def _reset_mount(when: int) -> str:
    """debugfs(8) commands that undo what the mount and extlinux stamped with the time of
    the build: the superblock's mount/write times, count and path, and the times and
    random generation numbers of extlinux's files."""
    cmds = [f"ssv mtime @{when}", f"ssv wtime @{when}", f"ssv lastcheck @{when}",
            "ssv mnt_count 0", 'ssv last_mounted ""', "ssv kbytes_written 0"]
    for path in ("/boot/extlinux", "/boot/extlinux/ldlinux.sys", "/boot/extlinux/ldlinux.c32"):
        cmds.append(f"sif {path} generation 0")
        for name in ("atime", "mtime", "ctime", "crtime"):
            cmds += [f"sif {path} {name} @{when}", f"sif {path} {name}_extra 0"]
    return "\n".join(cmds) + "\n"


def _grub_efi(root: Path, abi: str, env: dict[str, str]) -> bytes:
    """``BOOTX64.EFI``: a standalone GRUB for x86-64 UEFI, made by the tree's own
    ``grub-mkimage`` (grub-mkimage(1)) with :data:`GRUB_MODULES` and an embedded
    configuration that finds the partition labelled ``root`` and boots kernel ``abi`` from
    it with :data:`KERNEL_ARGS`. Raises :class:`BuildError`."""
    cfg, efi = root / "tmp/metalplane-grub.cfg", root / "tmp/BOOTX64.EFI"
    cfg.write_text("search --no-floppy --label root --set=root\n"
                   f"linux ($root)/boot/vmlinuz-{abi} {KERNEL_ARGS}\n"
                   f"initrd ($root)/boot/initrd.img-{abi}\n"
                   "boot\n")
    try:
        run(["chroot", str(root), "grub-mkimage", "-O", "x86_64-efi", "-p", "/EFI/BOOT",
             "-c", "/tmp/metalplane-grub.cfg", "-o", "/tmp/BOOTX64.EFI", *GRUB_MODULES],
            "grub-mkimage", env=env)
        return efi.read_bytes()
    finally:
        cfg.unlink(missing_ok=True)
        efi.unlink(missing_ok=True)


def _esp(work: Path, loader: bytes, volume_id: str, sector: int, when: int,
         env: dict[str, str]) -> Path:
    """The EFI system partition's file system, ``ESP_MIB`` MiB of FAT16 labelled ``EFI``
    holding ``loader`` as ``/EFI/BOOT/BOOTX64.EFI``, at a fixed volume ID, to start at
    512-byte ``sector`` of the disk (its hidden sectors), with its files' times at
    ``when`` (mkfs.fat(8) ``--invariant``, mcopy(1) ``-m``). Returns the file. Raises
    :class:`BuildError`."""
    tree, esp = work / "esp", work / "esp.img"
    boot = tree / "EFI" / "BOOT"
    boot.mkdir(parents=True)
    (boot / "BOOTX64.EFI").write_bytes(loader)
    for path in (boot / "BOOTX64.EFI", boot, tree / "EFI"):
        os.utime(path, (when, when))
    mtools = {**env, "MTOOLS_SKIP_CHECK": "1"}
    run(["mkfs.fat", "-C", "-F", "16", "-n", "EFI", "-i", volume_id, "-h", str(sector),
         "--invariant",
         str(esp), str(ESP_MIB << 10)], "mkfs.fat", env=env)
    run(["mcopy", "-s", "-m", "-i", str(esp), str(tree / "EFI"), "::/"], "mcopy", env=mtools)
    return esp


def _build(inputs: ImageInputs, apt: PrivateApt, work: Path, progress: Progress) -> None:
    root, out, mnt = work / "root", work / "out", work / "mnt"
    out.mkdir(parents=True)
    when = epoch()
    key = inputs.key()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
           "SOURCE_DATE_EPOCH": str(when)}
    suite = apt.sources[0].split()[2]

    progress("mmdebstrap: Debian with systemd, the cloud kernel and cloud-init")
    run(["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
         f"--include={','.join(PACKAGES)}", "--aptopt=APT::Install-Recommends \"false\"",
         *(f"--dpkgopt=path-exclude={p}" for p in DOC_EXCLUDES),
         "--dpkgopt=path-include=/usr/share/doc/*/copyright",
         suite, str(root), str(apt.sources_file)], "mmdebstrap", timeout=1800, env=env)
    installed = dict(
        line.split("\t") for line in run(
            ["chroot", str(root), "dpkg-query", "-W", "-f=${Package}\t${Version}\n"],
            "dpkg-query", env=env).splitlines())
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise BuildError("the image has no kernel in /boot")
    abi = kernels[-1]

    progress(f"configuring: fstab, cloud-init, extlinux for kernel {abi}")
    (root / "etc/fstab").write_text("LABEL=root / ext4 errors=remount-ro 0 1\n")
    (root / "etc/cloud/cloud.cfg.d/90-metalplane.cfg").write_text(CLOUD_CFG)
    for rel in ("etc/hostname", "etc/resolv.conf", "var/lib/dbus/machine-id"):
        (root / rel).unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")  # empty: systemd's first boot makes one
    for key_file in (root / "etc/ssh").glob("ssh_host_*"):
        key_file.unlink()  # openssh-server's postinst made them: each node makes its own
    for rel in ("var/cache/apt", "var/lib/apt/lists", "var/log"):
        path = root / rel
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir()
    (root / "boot/extlinux").mkdir(exist_ok=True)
    (root / "boot/extlinux/extlinux.conf").write_text(
        "DEFAULT debian\nPROMPT 0\nTIMEOUT 0\nLABEL debian\n"
        f"  LINUX /boot/vmlinuz-{abi}\n  INITRD /boot/initrd.img-{abi}\n"
        f"  APPEND {KERNEL_ARGS}\n")
    progress("UEFI: BOOTX64.EFI (grub-mkimage)")
    loader = _grub_efi(root, abi, env)
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if st.st_mtime > when:
            os.utime(path, (when, when), follow_symlinks=False)

    used = sum(p.lstat().st_size for p in root.rglob("*"))
    fs_mib = (used * 13 // 10 >> 20) + 256  # room for first boot, logs, the agent's nothing
    raw = out / f"{NAME}.raw"
    progress(f"disk: MBR + ext4 of {fs_mib} MiB (mkfs.ext4 -d), extlinux; the ESP")
    esp_offset = PART_OFFSET + (fs_mib << 20)
    esp = _esp(work, loader, key[8:16], esp_offset >> 9, when, env)
    with open(raw, "wb") as f:
        f.truncate(esp_offset + (ESP_MIB << 20))
    label_id = key[:8]
    run(["sfdisk", "-q", str(raw)], "sfdisk",
        input=f"label: dos\nlabel-id: 0x{label_id}\n"
              f"start={PART_OFFSET >> 9}, size={fs_mib << 11}, type=83, bootable\n"
              f"start={esp_offset >> 9}, size={ESP_MIB << 11}, type=ef\n")
    fs_uuid = str(uuid.UUID(hashlib.sha256(f"root-{key}".encode()).hexdigest()[:32]))
    fake_time = {**env, "E2FSPROGS_FAKE_TIME": str(when)}
    # without a journal while extlinux is installed through a mount (a journal's commit
    # blocks carry the time); added once the mount's traces are reset
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", fs_uuid, "-O", "^has_journal",
         "-E", f"offset={PART_OFFSET},hash_seed={fs_uuid}", "-d", str(root), str(raw),
         f"{fs_mib}M"], "mkfs.ext4", env=fake_time)
    mnt.mkdir()
    run(["mount", "-o", f"loop,noatime,offset={PART_OFFSET}", str(raw), str(mnt)], "mount")
    try:
        run(["extlinux", "--install", str(mnt / "boot/extlinux")], "extlinux --install")
    finally:
        run(["umount", str(mnt)], "umount")
    fs = f"{raw}?offset={PART_OFFSET}"  # e2fsprogs' unix I/O manager: a file system at N
    run(["debugfs", "-w", "-f", "-", fs], "debugfs", input=_reset_mount(when), env=fake_time)
    run(["tune2fs", "-O", "has_journal", fs], "tune2fs", env=fake_time)
    with open(raw, "r+b") as f:
        f.write(MBR.read_bytes()[:440])  # syslinux's MBR code: boots the active partition
        f.seek(esp_offset)
        f.write(esp.read_bytes())

    progress("qcow2 and checksums")
    qcow2 = out / f"{NAME}.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)],
        "qemu-img convert")
    sums = {p.name: sha256_file(p) for p in (raw, qcow2)}
    (out / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    manifest = {
        "key": key, "distro": "debian", "release": suite, "kernel_version": abi,
        "inputs": asdict(inputs), "installed": dict(sorted(installed.items())),
        "files": {n: {"size": (out / n).stat().st_size, "sha256": h} for n, h in sums.items()},
        "root_fs_uuid": fs_uuid, "source_date_epoch": when,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
