"""The images redfish-virtual-media boots the agent from, opened with pycdlib: the kernel,
the ramdisk and the node's parameters; the configuration image; driver_info checks."""

from __future__ import annotations

import io
import os
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycdlib
import pytest
import sushy
from sushy import exceptions as sushy_exc

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid
from metalplane.drivers.hardware import IDRACHardware, ILOHardware, RedfishHardware
from metalplane.drivers.modules import boot_iso, idrac, ilo, redfish_vmedia
from metalplane.drivers.modules.redfish_vmedia import (
    RedfishVirtualMediaBoot,
    boot_iso_path,
    config_image_path,
)
from tests.helpers.iso import iso_files

KERNEL = b"kernel-bytes" * 500
RAMDISK = b"ramdisk-bytes" * 900


@dataclass
class _Node:
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    driver_internal_info: dict[str, Any] = field(default_factory=dict)


class _Network:
    """A network interface giving no network_data (the ramdisk asks DHCP)."""

    def get_node_network_data(self, task: Any) -> dict[str, Any]:
        return {}


@dataclass
class _Task:
    """The part of a task prepare_images reads."""

    driver_info: dict[str, Any]
    node: _Node = field(default_factory=_Node)
    network: _Network = field(default_factory=_Network)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(data_dir=tmp_path, boot_server_url="http://192.0.2.1:8089",
                 agent_api_url="http://192.0.2.1:6385")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "agent.kernel").write_bytes(KERNEL)
    (tmp_path / "files" / "agent.initramfs").write_bytes(RAMDISK)
    return s


def test_the_iso_holds_the_kernel_ramdisk_and_the_nodes_parameters(settings: Settings) -> None:
    task = _Task({"redfish_address": "http://bmc", "kernel_append_params": "ipa-debug=1"})
    cd_url, config_url = RedfishVirtualMediaBoot(settings).prepare_images(task)  # type: ignore[arg-type]
    node = task.node.uuid
    assert cd_url == f"http://192.0.2.1:8089/redfish/boot-{node}.iso" and config_url is None
    path = boot_iso_path(settings, task.node)
    files = iso_files(path.read_bytes(), ["/vmlinuz", "/initrd", "/parameters.txt",
                                      "/boot/grub/grub.cfg", "/isolinux/isolinux.cfg"])
    assert files["/vmlinuz"] == KERNEL and files["/initrd"] == RAMDISK
    params = files["/parameters.txt"].decode().strip()
    assert params.split() == ["metalplane.api_url=http://192.0.2.1:6385",
                              f"metalplane.node={node}", "console=ttyS0", "ipa-debug=1"]
    assert f"linux /vmlinuz {params}\n" in files["/boot/grub/grub.cfg"].decode()
    assert f"append initrd=/initrd {params}\n" in files["/isolinux/isolinux.cfg"].decode()
    # not bootable by firmware without an EFI System Partition image (driver_info bootloader)
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    assert iso.eltorito_boot_catalog is None
    iso.close()


def test_the_iso_is_reused_until_its_inputs_change(settings: Settings) -> None:
    task = _Task({"redfish_address": "http://bmc"})
    iface = RedfishVirtualMediaBoot(settings)
    iface.prepare_images(task)  # type: ignore[arg-type]
    path = boot_iso_path(settings, task.node)
    os.utime(path, ns=(1, 1))
    iface.prepare_images(task)  # type: ignore[arg-type]
    assert path.stat().st_mtime_ns == 1  # same inputs: not rebuilt
    task.driver_info["kernel_append_params"] = "nofb"
    iface.prepare_images(task)  # type: ignore[arg-type]
    assert path.stat().st_mtime_ns != 1
    assert b"nofb" in iso_files(path.read_bytes(), ["/parameters.txt"])["/parameters.txt"]


def test_a_bootloader_image_makes_the_iso_uefi_bootable(settings: Settings,
                                                        tmp_path: Path) -> None:
    esp = tmp_path / "esp.img"
    esp.write_bytes(b"\x00" * 32768)
    task = _Task({"redfish_address": "http://bmc", "bootloader": str(esp)})
    RedfishVirtualMediaBoot(settings).prepare_images(task)  # type: ignore[arg-type]
    iso = pycdlib.PyCdlib()
    iso.open(str(boot_iso_path(settings, task.node)))
    try:
        catalog = iso.eltorito_boot_catalog
        assert catalog is not None
        assert catalog.validation_entry.platform_id == 0xEF  # El Torito's EFI platform
        assert catalog.initial_entry.load_rba > 0
    finally:
        iso.close()


def test_a_deploy_iso_is_inserted_as_is_and_the_parameters_go_on_a_config_image(
        settings: Settings) -> None:
    task = _Task({"redfish_address": "http://bmc",
                  "deploy_iso": "http://images.example/agent.iso"})
    cd_url, config_url = RedfishVirtualMediaBoot(settings).prepare_images(task)  # type: ignore[arg-type]
    assert cd_url == "http://images.example/agent.iso"
    assert config_url == f"http://192.0.2.1:8089/redfish/config-{task.node.uuid}.img"
    assert not boot_iso_path(settings, task.node).exists()
    data = config_image_path(settings, task.node).read_bytes()
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    assert iso.pvd.volume_identifier.decode().strip() == boot_iso.CONFIG_LABEL
    iso.close()
    params = iso_files(data, ["/parameters.txt"])["/parameters.txt"].decode().split()
    assert f"metalplane.node={task.node.uuid}" in params


def test_missing_files_and_bad_keys_are_refused_naming_the_key(settings: Settings) -> None:
    iface = RedfishVirtualMediaBoot(settings)
    task = _Task({"redfish_address": "http://bmc", "deploy_ramdisk": "/nonexistent/initrd"})
    with pytest.raises(Invalid, match="driver_info/deploy_ramdisk"):
        iface.prepare_images(task)  # type: ignore[arg-type]
    with pytest.raises(Invalid, match="driver_info/deploy_iso"):
        iface.validate_driver_info({"redfish_address": "http://bmc",
                                    "deploy_iso": "/local/agent.iso"})
    with pytest.raises(Invalid, match="redfish_address"):
        iface.validate_driver_info({})
    # a boot server URL of files/ is read from the conductor's own copy
    task = _Task({"redfish_address": "http://bmc",
                  "deploy_kernel": "http://192.0.2.1:8089/files/agent.kernel"})
    iface.prepare_images(task)  # type: ignore[arg-type]


def test_vendor_variants_read_their_vendors_keys(settings: Settings) -> None:
    boot = idrac.IDRACVirtualMediaBoot(settings)
    with pytest.raises(Invalid, match="drac_address"):
        boot.validate_driver_info({})
    boot.validate_driver_info({"drac_address": "192.0.2.31", "drac_username": "root",
                               "drac_password": "calvin"})
    props = boot.get_properties()
    assert "drac_address" in props and "deploy_iso" in props
    assert "ilo_address" in ilo.ILOVirtualMediaBoot(settings).get_properties()
    assert "redfish-virtual-media" in RedfishHardware.supported["boot"]
    assert "idrac-redfish-virtual-media" in IDRACHardware.supported["boot"]
    assert "ilo-virtual-media" in ILOHardware.supported["boot"]


class _Media:
    def __init__(self, path: str, types: list[Any], image: str = "") -> None:
        self.path, self.media_types, self.image = path, types, image
        self.inserted = bool(image)
        self.calls: list[tuple[str, str]] = []

    def eject_media(self) -> None:
        self.calls.append(("eject", self.image))
        self.image, self.inserted = "", False

    def insert_media(self, url: str, inserted: bool = True,
                     write_protected: bool = True) -> None:
        self.calls.append(("insert", url))
        self.image, self.inserted = url, inserted


class _Owner:
    def __init__(self, path: str, media: list[_Media] | None) -> None:
        self.path, self._media = path, media

    @property
    def virtual_media(self) -> Any:
        if self._media is None:  # a resource without a VirtualMedia link, as sushy says
            raise sushy_exc.MissingAttributeError(attribute="VirtualMedia",
                                                   resource=self.path)
        return _Collection(self._media)


@dataclass
class _Collection:
    members: list[_Media]

    def get_members(self) -> list[_Media]:
        return list(self.members)


@dataclass
class _BMCTask(_Task):
    cache: dict[str, Any] = field(default_factory=dict)

    def save(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.node, name, value)


def test_older_bmcs_have_the_cd_on_the_manager_and_what_it_holds_is_ejected_first(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    floppy = _Media("/Managers/1/VirtualMedia/Floppy", [sushy.VirtualMediaType.FLOPPY])
    cd = _Media("/Managers/1/VirtualMedia/Cd",
                [sushy.VirtualMediaType.CD, sushy.VirtualMediaType.DVD], image="http://old")
    system = _Owner("/Systems/1", None)
    system.managers = [_Owner("/Managers/1", [floppy, cd])]  # type: ignore[attr-defined]
    monkeypatch.setattr(redfish_vmedia, "_system", lambda task, iface: system)
    task = _BMCTask({"redfish_address": "http://bmc"})
    iface = RedfishVirtualMediaBoot(settings)
    iface.prepare_ramdisk(task)  # type: ignore[arg-type]
    url = f"http://192.0.2.1:8089/redfish/boot-{task.node.uuid}.iso"
    assert cd.calls == [("eject", "http://old"), ("insert", url)] and floppy.calls == []
    assert task.node.driver_internal_info.get("agent_boot")  # the agent's lookup is answered
    iface.clean_up_ramdisk(task)  # type: ignore[arg-type]
    assert cd.calls[-1] == ("eject", url) and not cd.inserted
    assert not boot_iso_path(settings, task.node).exists()
    assert "agent_boot" not in task.node.driver_internal_info

    system.managers = [_Owner("/Managers/1", [floppy])]  # type: ignore[attr-defined]
    with pytest.raises(Invalid, match="no VirtualMedia device for CD, DVD"):
        iface.prepare_ramdisk(task)  # type: ignore[arg-type]
