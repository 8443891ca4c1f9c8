"""Booting the ramdisk agent from Redfish virtual media: the ``redfish-virtual-media`` boot
interface (Ironic's name), with no DHCP or PXE for the ramdisk's boot.

:meth:`RedfishVirtualMediaBoot.prepare_ramdisk` builds the node's boot ISO
(:mod:`metalplane.drivers.modules.boot_iso`: the agent's kernel and ramdisk, its parameters
in the boot configuration) into ``<data_dir>/redfish/boot-<node>.iso``, which the boot
server serves at ``<boot server>/redfish/boot-<node>.iso`` (the path Ironic's conductor
publishes it at); finds the VirtualMedia device of the system (or, for older BMCs, of its
managers) whose ``MediaTypes`` include ``CD`` or ``DVD``, ejects what it holds and inserts
the ISO's URL. :func:`agent.boot_ramdisk` then sets the one-time boot device ``cdrom``
(Redfish ``Cd``) and powers the node on. :meth:`clean_up_ramdisk` ejects the media and
removes the ISO. The ISO is rebuilt only when its inputs change (kernel, ramdisk, the
parameters).

driver_info keys (Ironic's for ``redfish-virtual-media``), besides the Redfish ones:
``deploy_kernel`` and ``deploy_ramdisk`` (boot server URLs, other http(s) URLs, fetched
once, or local paths; default the boot server's ``files/agent.kernel`` and
``files/agent.initramfs``), ``deploy_iso`` (a prebuilt agent ISO's http(s) URL, inserted
as it is; the parameters then go on the configuration image, ``ir-vfd-dev``, inserted in
a removable device (``USBStick`` or ``Floppy``) and served at
``<boot server>/redfish/config-<node>.img``), ``config_via_removable`` (bool: insert the
configuration image with a built ISO too), ``bootloader`` (an EFI System Partition image
made the ISO's El Torito boot image), ``kernel_append_params`` (more kernel parameters),
``external_http_url`` (the boot server's URL as this node's BMC reaches it; default the
``external_http_url`` setting, else ``boot_server_url``: Ironic's ``[deploy]
external_http_url`` and the driver_info key of the same name).

DHCP-less boot (Ironic's "Layer 3 or DHCP-less ramdisk booting"): the node's network
configuration from its network interface (its ``network_data`` field; with ``neutron``,
failing that, the addresses its ports were given on the provider network of the step)
goes on its boot ISO as ``openstack/latest/network_data.json``, and the ISO is then
labelled ``config-2``: the ramdisk sets its addresses from it (glean's job in
ironic-python-agent's ramdisk; :mod:`metalplane.agent.vmedia`) and asks no DHCP server. A
prebuilt ``deploy_iso`` cannot carry it (a warning is logged, as Ironic does).

Sources: DMTF Redfish ``VirtualMedia`` schema (``MediaTypes``, ``Inserted``, ``Image``,
actions ``VirtualMedia.InsertMedia`` / ``VirtualMedia.EjectMedia``),
``ComputerSystem.Boot.BootSourceOverrideTarget`` ``Cd``; Ironic's
``drivers/modules/redfish/boot.py`` and ``image_utils.py``; sushy's VirtualMedia API.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sushy
from sushy import exceptions as sushy_exc

from metalplane.common.exceptions import Invalid
from metalplane.drivers import base
from metalplane.drivers.modules import agent, boot_iso
from metalplane.drivers.modules.redfish import RedfishMixin, _system

__all__ = ["CD_TYPES", "PROPERTIES", "REMOVABLE_TYPES", "RedfishVirtualMediaBoot",
           "agent_iso_inputs", "boot_iso_path", "config_image_path", "iso_url"]

LOG = logging.getLogger(__name__)

CD_TYPES = frozenset({sushy.VirtualMediaType.CD, sushy.VirtualMediaType.DVD})
REMOVABLE_TYPES = frozenset({sushy.VirtualMediaType.USB_STICK,
                             sushy.VirtualMediaType.FLOPPY})
_DIR = "redfish"  # under data_dir, served at <boot server>/redfish/
_FETCH_TIMEOUT = httpx.Timeout(30.0, read=120.0)
PROPERTIES = {
    "deploy_kernel": "The agent's kernel: a URL or a path. Default the boot server's "
    "files/agent.kernel.",
    "deploy_ramdisk": "The agent's ramdisk: a URL or a path. Default the boot server's "
    "files/agent.initramfs.",
    "deploy_iso": "A prebuilt agent ISO's http(s) URL, inserted as it is instead of the "
    "ISO metalplane builds; the parameters go on a configuration image.",
    "config_via_removable": "true: also insert the parameters' configuration image in a "
    "USBStick or Floppy device. Default false.",
    "bootloader": "An EFI System Partition image (a URL or a path), the ISO's UEFI boot "
    "image. Optional.",
    "kernel_append_params": "More kernel parameters for the agent. Optional.",
    "external_http_url": "The boot server's URL as the BMC reaches it, for the images it "
    "fetches. Default the external_http_url setting, else boot_server_url.",
}


def boot_iso_path(settings: Any, node: Any) -> Path:
    """Where the node's boot ISO is kept: ``<data_dir>/redfish/boot-<uuid>.iso``."""
    return Path(settings.data_dir) / _DIR / f"boot-{node.uuid}.iso"


def config_image_path(settings: Any, node: Any) -> Path:
    """Where the node's configuration image is kept: ``<data_dir>/redfish/config-<uuid>.img``."""
    return Path(settings.data_dir) / _DIR / f"config-{node.uuid}.img"


def iso_url(settings: Any, path: Path, info: dict[str, Any] | None = None) -> str:
    """The URL the BMC fetches ``path`` (under ``<data_dir>/redfish``) from: under
    driver_info ``external_http_url``, else the ``external_http_url`` setting, else the
    boot server's URL as nodes reach it."""
    base = str((info or {}).get("external_http_url") or settings.external_http_url
               or agent.boot_url(settings)).rstrip("/")
    return f"{base}/{_DIR}/{path.name}"


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes", "on")


def _params(settings: Any, node: Any, info: dict[str, Any]) -> str:
    params = agent.agent_params(node, agent.api_url(settings))
    extra = str(info.get("kernel_append_params") or "").strip()
    return f"{params} {extra}" if extra else params


def _local(settings: Any, ref: str, key: str) -> Path:
    """The local file of ``ref`` (driver_info ``key``): a boot server ``/files/`` URL or a
    path is read in place, another http(s) URL is fetched once into
    ``<data_dir>/redfish/cache``. Raises :class:`Invalid` naming ``key``."""
    files = Path(settings.data_dir) / "files"
    boot = agent.boot_url(settings)
    if boot and ref.startswith(f"{boot}/files/"):
        path = files / ref.removeprefix(f"{boot}/files/")
    elif ref.startswith("file://"):
        path = Path(urllib.parse.urlsplit(ref).path)
    elif ref.startswith(("http://", "https://")):
        return _fetched(settings, ref, key)
    else:
        path = Path(ref)
    if not path.is_file():
        raise Invalid(f"driver_info/{key}: {ref} is not a file the conductor can read")
    return path


def _fetched(settings: Any, url: str, key: str) -> Path:
    cache = Path(settings.data_dir) / _DIR / "cache"
    path = cache / hashlib.sha256(url.encode()).hexdigest()
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".fetch.")
    try:
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, timeout=_FETCH_TIMEOUT,
                                                      follow_redirects=True) as resp:
            resp.raise_for_status()
            for chunk in resp.iter_bytes(1 << 20):
                out.write(chunk)
        os.replace(tmp, path)
    except (httpx.HTTPError, OSError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise Invalid(f"driver_info/{key}: fetching {url} failed: {exc}") from exc
    return path


def agent_iso_inputs(settings: Any, node: Any,
                     info: dict[str, Any]) -> tuple[Path, Path, Path | None, str]:
    """The kernel, ramdisk and EFI boot image files and the kernel command line the
    node's boot ISO is built from. Raises :class:`Invalid` naming the driver_info key
    whose file cannot be had."""
    boot = agent.boot_url(settings)
    kernel = _local(settings, str(info.get("deploy_kernel") or f"{boot}/files/agent.kernel"),
                    "deploy_kernel")
    ramdisk = _local(settings,
                     str(info.get("deploy_ramdisk") or f"{boot}/files/agent.initramfs"),
                     "deploy_ramdisk")
    loader = (_local(settings, str(info["bootloader"]), "bootloader")
              if info.get("bootloader") else None)
    return kernel, ramdisk, loader, _params(settings, node, info)


def _digest(*parts: Any) -> str:
    """What an image is built from, to tell whether the cached one still fits: file
    paths with their size and modification time, and the parameters."""
    described = []
    for part in parts:
        if isinstance(part, Path):
            st = part.stat()
            described.append([str(part), st.st_size, st.st_mtime_ns])
        else:
            described.append(part)
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()


def _cached(path: Path, digest: str, build: Any) -> None:
    """Build ``path`` with ``build(path)`` unless it exists from the same inputs
    (``<path>.sha256`` holds their digest)."""
    stamp = path.with_name(path.name + ".sha256")
    if path.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return
    build(path)
    stamp.write_text(digest)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)


class RedfishVirtualMediaBoot(RedfishMixin, base.BootInterface):
    """The agent boots from an ISO inserted through Redfish VirtualMedia."""

    name = "redfish-virtual-media"
    agent_boot_device = "cdrom"

    def get_properties(self) -> dict[str, str]:
        return {**super().get_properties(), **PROPERTIES}

    def validate_driver_info(self, info: dict[str, Any], partial: bool = False) -> None:
        super().validate_driver_info(info, partial)
        for key in ("deploy_iso", "external_http_url"):
            url = info.get(key)
            if url and not str(url).startswith(("http://", "https://")):
                raise Invalid(f"driver_info/{key} {url!r} is not an http:// or https:// URL "
                              "the BMC can fetch")

    def validate(self, task: base.Task) -> None:
        super().validate(task)
        if not agent.boot_url(self.settings).startswith(("http://", "https://")):
            raise Invalid("boot_interface redfish-virtual-media needs the boot server, which "
                          "the BMC fetches the ISO from: set boot_listen and boot_server_url, "
                          "an http(s) URL the BMC can reach")

    # -- the BMC's side --------------------------------------------------------------

    def _devices(self, task: base.Task) -> Iterator[Any]:
        """The VirtualMedia resources of the node's system, then of its managers."""
        system = _system(task, self)

        def members(owner: Any) -> list[Any]:
            try:
                return list(owner.virtual_media.get_members())
            except sushy_exc.MissingAttributeError:  # no VirtualMedia link
                return []

        yield from self._call(task, "GET VirtualMedia of the system", lambda: members(system))
        managers = self._call(task, "GET Managers of the system", lambda: system.managers)
        for manager in managers:
            yield from self._call(task, f"GET VirtualMedia of {manager.path}",
                                  lambda m=manager: members(m))

    def _device(self, task: base.Task, types: frozenset[Any]) -> Any:
        for device in self._devices(task):
            if types & set(device.media_types or ()):
                return device
        wanted = ", ".join(sorted(str(t.value) for t in types))
        raise Invalid(f"node {task.node.uuid}: the BMC has no VirtualMedia device for "
                      f"{wanted}")

    def _eject(self, task: base.Task, device: Any) -> None:
        if device.inserted or device.image:
            self._call(task, f"VirtualMedia.EjectMedia on {device.path}", device.eject_media)

    def _insert(self, task: base.Task, types: frozenset[Any], url: str) -> None:
        device = self._device(task, types)
        self._eject(task, device)
        self._call(task, f"VirtualMedia.InsertMedia of {url} on {device.path}",
                   lambda: device.insert_media(url, inserted=True, write_protected=True))

    def _eject_all(self, task: base.Task, types: frozenset[Any]) -> None:
        for device in self._devices(task):
            if types & set(device.media_types or ()):
                self._eject(task, device)

    # -- the boot interface ----------------------------------------------------------

    def prepare_images(self, task: base.Task) -> tuple[str, str | None]:
        """Build (or reuse) the node's images; return the URLs of the CD's image (the boot
        ISO, or ``deploy_iso``) and of the configuration image (None when it is not
        used). Raises :class:`Invalid` naming the driver_info key whose file is missing."""
        info = task.driver_info
        node = task.node
        params = _params(self.settings, node, info)
        network_data = task.network.get_node_network_data(task)
        if info.get("deploy_iso"):
            cd_url = str(info["deploy_iso"])
            if network_data:
                LOG.warning("node %s: the prebuilt deploy_iso cannot carry its network_data; "
                            "its ramdisk must find its address another way", node.uuid)
        else:
            kernel, ramdisk, loader, params = agent_iso_inputs(self.settings, node, info)
            path = boot_iso_path(self.settings, node)
            _cached(path, _digest(kernel, ramdisk, loader, params, network_data),
                    lambda out: boot_iso.build_boot_iso(out, kernel, ramdisk, params, loader,
                                                        network_data or None))
            cd_url = iso_url(self.settings, path, info)
        if not _uses_removable(info):
            return cd_url, None
        config = config_image_path(self.settings, node)
        _cached(config, _digest(params),
                lambda out: _write(out, boot_iso.build_config_image(params)))
        return cd_url, iso_url(self.settings, config, info)

    def prepare_ramdisk(self, task: base.Task) -> None:
        """Build (or reuse) the node's images and insert them: the ISO in the CD/DVD
        device, the configuration image (if used) in a USBStick or Floppy one. Raises
        :class:`Invalid` (a missing kernel, ramdisk or device) and :class:`BMCError`
        naming the Redfish call that failed."""
        self.validate(task)
        cd_url, config_url = self.prepare_images(task)
        agent.start_agent_boot(task)
        if config_url:
            self._insert(task, REMOVABLE_TYPES, config_url)
        self._insert(task, CD_TYPES, cd_url)

    def clean_up_ramdisk(self, task: base.Task) -> None:
        """Eject the media, remove the node's images, end the agent's boot (its token
        revoked). Raises :class:`BMCError` naming the Redfish call that failed."""
        agent.end_agent_boot(task)
        types = CD_TYPES | (REMOVABLE_TYPES if _uses_removable(task.driver_info) else
                            frozenset())
        try:
            self._eject_all(task, types)
        finally:
            _remove(boot_iso_path(self.settings, task.node))
            _remove(config_image_path(self.settings, task.node))

    def prepare_instance(self, task: base.Task) -> None:
        task.driver.management.set_boot_device(task, "disk", persistent=True)

    def clean_up_instance(self, task: base.Task) -> None:
        return None


def _uses_removable(info: dict[str, Any]) -> bool:
    return bool(info.get("deploy_iso")) or _truthy(info.get("config_via_removable"))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
