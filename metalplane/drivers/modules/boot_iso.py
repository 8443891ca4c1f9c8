"""The images a node boots the ramdisk agent from over virtual media, built in pure Python.

Two images, as Ironic's ``drivers/modules/image_utils.py`` makes them:

- the *boot ISO* (:func:`build_boot_iso`): the agent's kernel (``/vmlinuz``) and ramdisk
  (``/initrd``), the agent's parameters as the kernel command line in the boot loaders'
  configurations (GRUB's ``/boot/grub/grub.cfg``, ISOLINUX's ``/isolinux/isolinux.cfg``)
  and the same line in ``/parameters.txt``; with an EFI System Partition image it is
  bootable by UEFI firmware (El Torito, no emulation); with the node's network
  configuration for a DHCP-less boot, ``/openstack/latest/network_data.json`` too, and
  the volume is then labelled ``config-2`` so that the ramdisk finds it as a config drive
  (Ironic's ``images._label``; glean reads it);
- the *configuration image* (:func:`build_config_image`): a small ISO 9660 image labelled
  ``ir-vfd-dev`` holding ``parameters.txt``, the label and file ironic-python-agent looks
  for on a removable device when the boot ISO cannot carry the parameters (a prebuilt
  ``deploy_iso``).

The images carry no secret (the agent's token is issued to its first lookup, as with
iPXE). Sources: ECMA-119 (ISO 9660) and the El Torito specification through pycdlib;
Ironic's ``image_utils.prepare_configure_image`` and ironic-python-agent's
``utils._get_vmedia_params`` for the label and ``parameters.txt``. The names come from
:mod:`metalplane.agent.vmedia`, the ramdisk's reader of these images. This module builds
bytes and files; it does not talk to BMCs or serve anything.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pycdlib

from metalplane.agent.vmedia import (
    CONFIG_DRIVE_LABEL,
    CONFIG_LABEL,
    NETWORK_DATA_FILE,
    PARAMETERS_FILE,
)

__all__ = ["BOOT_LABEL", "CONFIG_DRIVE_LABEL", "CONFIG_LABEL", "PARAMETERS_FILE",
           "build_boot_iso", "build_config_image", "grub_config", "isolinux_config"]

BOOT_LABEL = "METALPLANE_AGENT"


def grub_config(params: str) -> str:
    """GRUB's configuration booting ``/vmlinuz`` with command line ``params`` and
    ``/initrd``."""
    return ("set default=0\nset timeout=5\n"
            'menuentry "metalplane ramdisk agent" {\n'
            f"    linux /vmlinuz {params}\n"
            "    initrd /initrd\n"
            "}\n")


def isolinux_config(params: str) -> str:
    """ISOLINUX's configuration booting ``/vmlinuz`` with ``params`` and ``/initrd``."""
    return ("default agent\nprompt 0\ntimeout 50\n"
            "label agent\n"
            "    kernel /vmlinuz\n"
            f"    append initrd=/initrd {params}\n")


def _new(label: str) -> pycdlib.PyCdlib:
    iso = pycdlib.PyCdlib()
    # interchange level 3 (big files), Joliet and Rock Ridge: the long, lowercase names
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    return iso


def _add_dir(iso: pycdlib.PyCdlib, path: str) -> None:
    """Add ``path`` (lowercase, ``/a/b``) and its parents."""
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        sub = "/" + "/".join(parts[:i])
        iso.add_directory(sub.upper(), rr_name=parts[i - 1], joliet_path=sub)


def _add_bytes(iso: pycdlib.PyCdlib, path: str, data: bytes, iso_name: str) -> None:
    """Add ``data`` at ``path`` (its Rock Ridge and Joliet name), ISO 9660 name
    ``iso_name`` (8.3, upper case) in the same directory."""
    parent, _, name = path.rpartition("/")
    iso.add_fp(io.BytesIO(data), len(data), f"{parent.upper()}/{iso_name};1", rr_name=name,
               joliet_path=path)


def build_config_image(params: str) -> bytes:
    """The configuration image: ISO 9660 labelled :data:`CONFIG_LABEL` with
    ``parameters.txt`` holding ``params`` (kernel command line syntax, one line)."""
    iso = _new(CONFIG_LABEL)
    _add_bytes(iso, f"/{PARAMETERS_FILE}", (params + "\n").encode(), "PARAMETE.TXT")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def build_boot_iso(out: Path, kernel: Path, ramdisk: Path, params: str,
                   efiboot: Path | None = None,
                   network_data: dict[str, Any] | None = None) -> None:
    """Write the boot ISO to ``out`` (atomically: a reader sees the old file or the new
    one, never a part). ``kernel`` and ``ramdisk`` are files (read while writing, not
    held in memory); ``params`` the agent's kernel command line; ``efiboot`` an EFI System
    Partition image (FAT, with ``EFI/BOOT/BOOTX64.EFI``) made the El Torito boot image;
    ``network_data`` (OpenStack ``network_data.json`` format) the ramdisk's network
    configuration for a DHCP-less boot, written to ``/openstack/latest/network_data.json``
    of a volume labelled ``config-2``.

    Raises :class:`OSError` for a file that cannot be read or written."""
    iso = _new(CONFIG_DRIVE_LABEL if network_data else BOOT_LABEL)
    with open(kernel, "rb") as k, open(ramdisk, "rb") as r:
        iso.add_fp(k, os.fstat(k.fileno()).st_size, "/VMLINUZ.;1", rr_name="vmlinuz",
                   joliet_path="/vmlinuz")
        iso.add_fp(r, os.fstat(r.fileno()).st_size, "/INITRD.;1", rr_name="initrd",
                   joliet_path="/initrd")
        _add_bytes(iso, f"/{PARAMETERS_FILE}", (params + "\n").encode(), "PARAMETE.TXT")
        _add_dir(iso, "/boot/grub")
        _add_bytes(iso, "/boot/grub/grub.cfg", grub_config(params).encode(), "GRUB.CFG")
        if network_data:
            _add_dir(iso, "/" + NETWORK_DATA_FILE.rpartition("/")[0])
            _add_bytes(iso, "/" + NETWORK_DATA_FILE,
                       json.dumps(network_data, indent=2).encode(), "NETWORK_.JSO")
        _add_dir(iso, "/isolinux")
        _add_bytes(iso, "/isolinux/isolinux.cfg", isolinux_config(params).encode(),
                   "ISOLINUX.CFG")
        esp = open(efiboot, "rb") if efiboot is not None else None  # noqa: SIM115
        try:
            if esp is not None:
                iso.add_fp(esp, os.fstat(esp.fileno()).st_size, "/EFIBOOT.IMG;1",
                           rr_name="efiboot.img", joliet_path="/efiboot.img")
                # platform 0xEF: EFI (El Torito as extended by UEFI 2.x, 13.3.2.1)
                iso.add_eltorito("/EFIBOOT.IMG;1", bootcatfile="/BOOT.CAT;1",
                                 platform_id=0xEF, efi=True, media_name="noemul")
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    iso.write_fp(f)
                os.chmod(tmp, 0o644)  # as the boot server's other files
                os.replace(tmp, out)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        finally:
            if esp is not None:
                esp.close()
            iso.close()
