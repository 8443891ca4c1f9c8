"""``metalplane ramdisk build`` (the agent's kernel and initramfs) and ``metalplane image
build debian`` (a whole-disk Debian 12 image with cloud-init), from Debian packages."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from metalplane.cli.common import CliError, Output, check_format
from metalplane.cli.output import console, emit, err_console
from metalplane.common.config import default_data_dir

__all__ = ["image_app", "ramdisk_app"]

ramdisk_app = typer.Typer(help="The ramdisk nodes PXE-boot into: a kernel and an initramfs "
                          "that run metalplane-agent.", no_args_is_help=True)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _sources(given: list[str] | None) -> tuple[str, ...]:
    from metalplane.build.apt import DEFAULT_SOURCES

    sources = tuple(given or DEFAULT_SOURCES)
    for line in sources:
        if len(line.split()) < 4 or line.split()[0] != "deb":
            raise CliError(f"--source takes 'deb URI SUITE COMPONENTS', not {line!r}")
    return sources


def _build(build: Callable[..., Any]) -> Any:
    """``build(progress=...)``, its steps printed on stderr with the time since the start;
    a :class:`BuildError` becomes a CLI message."""
    from metalplane.build.common import BuildError

    started = time.monotonic()

    def progress(message: str) -> None:
        err_console.print(f"[{time.monotonic() - started:6.1f}s] {message}", highlight=False)

    try:
        return build(progress=progress)
    except BuildError as exc:
        raise CliError(str(exc)) from None


@ramdisk_app.command("build")
def ramdisk_build(
    data_dir: Annotated[Path | None, typer.Option(
        help="The server's data directory: the result goes to DATA_DIR/files/agent.kernel "
             "and agent.initramfs, which the boot server serves (the iPXE script's "
             "defaults). Default: $METALPLANE_DATA_DIR, else ~/.local/share/metalplane.",
        show_default=False)] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Where builds are kept, by the content hash of their inputs (default "
             "DATA_DIR/ramdisk). Share one between data directories to build once.",
        show_default=False)] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="An apt source, 'deb URI SUITE COMPONENTS' (repeat; default "
        "Debian bookworm, bookworm-updates and bookworm-security from deb.debian.org).",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Build even if the cache holds this key.")] = False,
    install: Annotated[bool, typer.Option(
        "--install/--no-install", help="Put the result in DATA_DIR/files.")] = True,
    output: Output = "table",
) -> None:
    """Build the agent's ramdisk from Debian packages, or take it from the cache.

    mmdebstrap makes a minimal root file system with python3, the agent and what it uses
    (qemu-img, sfdisk, gdisk, ip, dhclient); the kernel and its virtio modules come from
    linux-image-cloud-amd64. The initramfs's /init runs metalplane-agent with the
    parameters of the kernel command line (metalplane.api_url=..., as the iPXE script
    gives them) and restarts it if it dies; the serial console (console=ttyS0) shows it
    all. Same inputs (package versions, agent source, recipe): the same bytes, and a
    second build is a cache hit. Needs root. See docs/ramdisk.md."""
    from metalplane.build import ramdisk

    check_format(output)
    result = _build(functools.partial(ramdisk.build, data_dir or default_data_dir(),
                                      cache_dir=cache_dir, sources=_sources(source),
                                      force=force, install=install))
    files = result.manifest["files"]
    summary = {
        "key": result.key, "cached": result.cached, "seconds": round(result.seconds, 1),
        "kernel": str(result.kernel), "kernel_version": result.manifest["kernel_version"],
        "kernel_bytes": files["agent.kernel"]["size"],
        "initramfs": str(result.initramfs),
        "initramfs_bytes": files["agent.initramfs"]["size"],
        "initramfs_sha256": files["agent.initramfs"]["sha256"],
        "unpacked_bytes": result.manifest["unpacked_bytes"],
        "installed": [str(p) for p in result.installed],
    }
    if output != "table":
        emit(summary, output)
        return
    how = "from the cache" if result.cached else "built"
    console.print(f"ramdisk {result.key} {how} in {result.seconds:.1f} s", highlight=False)
    console.print(f"  kernel     {result.kernel} ({_mib(summary['kernel_bytes'])}, "
                  f"{summary['kernel_version']})", highlight=False, soft_wrap=True)
    console.print(f"  initramfs  {result.initramfs} ({_mib(summary['initramfs_bytes'])}, "
                  f"{_mib(summary['unpacked_bytes'])} unpacked)", highlight=False,
                  soft_wrap=True)
    if result.installed:
        console.print(f"  served as  {', '.join(summary['installed'])}", highlight=False,
                      soft_wrap=True)


image_app = typer.Typer(help="Whole-disk OS images for `node deploy`, built from distribution "
                        "packages.", no_args_is_help=True)


@image_app.command("build")
def image_build(
    distro: Annotated[str, typer.Argument(help="The image: debian (Debian 12).")],
    data_dir: Annotated[Path | None, typer.Option(
        help="The server's data directory: the image goes to DATA_DIR/files/debian-12.raw, "
             ".qcow2 and .SHA256SUMS (the boot server's /files/...). Default: "
             "$METALPLANE_DATA_DIR, else ~/.local/share/metalplane.",
        show_default=False)] = None,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Where builds are kept by the hash of their inputs (default "
             "DATA_DIR/images-built).", show_default=False)] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="An apt source, 'deb URI SUITE COMPONENTS' (repeat; default "
        "Debian bookworm, its updates and security).", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Build even if the cache holds this key.")] = False,
    install: Annotated[bool, typer.Option(
        "--install/--no-install", help="Put the result in DATA_DIR/files.")] = True,
    output: Output = "table",
) -> None:
    """Build a whole-disk Debian 12 image (BIOS and UEFI, cloud-init), or take it from the cache.

    An MBR disk: partition 1 bootable (ext4, LABEL=root, extlinux for BIOS) with systemd,
    the cloud kernel, cloud-init reading a config-2 config drive (the one the agent writes
    after the image), ifupdown, openssh-server; partition 2 an EFI system partition with
    GRUB as /EFI/BOOT/BOOTX64.EFI for UEFI. Raw and qcow2 with their SHA-256. Needs root.
    See docs/ramdisk.md."""
    from metalplane.build import image

    check_format(output)
    result = _build(functools.partial(image.build, distro, data_dir or default_data_dir(),
                                      cache_dir=cache_dir, sources=_sources(source),
                                      force=force, install=install))
    files = result.manifest["files"]
    summary = {
        "key": result.key, "cached": result.cached, "seconds": round(result.seconds, 1),
        "raw": str(result.raw), "qcow2": str(result.qcow2), "sha256sums": str(result.sums),
        "files": files, "installed": [str(p) for p in result.installed],
    }
    if output != "table":
        emit(summary, output)
        return
    how = "from the cache" if result.cached else "built"
    console.print(f"image {distro} {result.key} {how} in {result.seconds:.1f} s",
                  highlight=False)
    for name, info in files.items():
        console.print(f"  {name:18} {_mib(info['size'])}  sha256:{info['sha256']}",
                      highlight=False, soft_wrap=True)
    if result.installed:
        console.print(f"  served as  {', '.join(summary['installed'])}", highlight=False,
                      soft_wrap=True)
