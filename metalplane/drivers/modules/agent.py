"""Booting the ramdisk agent over iPXE, and deploying, cleaning and inspecting through it.

``ipxe`` boot: the node's provider-network ports get DHCP options pointing iPXE at
``<boot server>/boot/<node>.ipxe`` (plain PXE firmware first gets ``undionly.kpxe`` over
TFTP, ``snponly.efi`` for a node whose boot mode is UEFI: :mod:`metalplane.drivers.boot_mode`).
The script carries the kernel, the ramdisk and the agent's parameters: the API URL and the
node. No secret: as Ironic's, the agent's token is issued once, to the first
lookup of this boot of the ramdisk (:data:`TOKEN_HASH_KEY` keeps its SHA-256, never the
token), and revoked when the ramdisk is cleaned up (the step ends, fails or is aborted).

``direct`` deploy and ``agent`` inspect are steps (:mod:`metalplane.drivers.steps`) that
queue one command for the agent (``driver_internal_info.agent_command``: inspect, erase or
deploy) and return WAIT: the node sits in ``inspect wait`` / ``clean wait`` /
``wait call-back`` until the agent heartbeats the result, which the conductor hands back
to the interface whose step queued the command (:meth:`agent_result`), or the wait times
out.

Deploy steps of ``direct`` (Ironic's names and priorities): ``deploy`` (100, boot the
ramdisk), ``write_image`` (80, the agent writes the image and the config drive),
``prepare_instance_boot`` (60, boot from disk), ``tear_down_agent`` (40, power off, token
revoked), then the common ``switch_to_tenant_network`` (30) and ``boot_instance`` (20).
Clean step: ``erase_devices`` (10). Inspect step: ``inspect_hardware`` (100).
"""

from __future__ import annotations

import hashlib
import urllib.parse
import uuid as uuidlib
from typing import Any

from metalplane.common.exceptions import Invalid
from metalplane.drivers import base
from metalplane.drivers.boot_mode import boot_mode, ipxe_bootfile
from metalplane.drivers.inventory import process
from metalplane.drivers.modules.image_cache import cache_image, parse_checksum
from metalplane.drivers.steps import (
    DONE,
    WAIT,
    Step,
    StepResult,
    clean_step,
    deploy_step,
    done_with,
    failed,
)

__all__ = ["AgentDeploy", "AgentInspect", "IPXEBoot", "agent_params", "api_url", "boot_url",
           "end_agent_boot", "queue_command", "start_agent_boot"]

# driver_internal_info keys: this boot of the ramdisk (its script is served while set), the
# SHA-256 of the token issued to its first lookup, and the command queued for the agent
BOOT_KEY = "agent_boot"
TOKEN_HASH_KEY = "agent_token_hash"
COMMAND_KEY = "agent_command"


def token_digest(token: str) -> str:
    """The SHA-256 (hex) of an agent token, as :data:`TOKEN_HASH_KEY` keeps it."""
    return hashlib.sha256(token.encode()).hexdigest()


def boot_url(settings: Any) -> str:
    """The boot server's URL as nodes reach it: ``boot_server_url``, else
    ``http(s)://<the first boot_listen address>``; ``""`` when the boot server has
    neither."""
    listen = settings.boot_listen_addresses
    scheme = "https" if settings.boot_tls else "http"
    url = settings.boot_server_url or (f"{scheme}://{listen[0]}" if listen else "")
    return str(url).rstrip("/")


def api_url(settings: Any) -> str:
    """The API's URL as the agent reaches it: ``agent_api_url``, else the API's own."""
    url = settings.agent_api_url or f"{settings.scheme}://{settings.host}:{settings.port}"
    return str(url).rstrip("/")


def queue_command(task: base.Task, name: str, params: dict[str, Any]) -> None:
    """Leave command ``name`` for the agent's next heartbeat."""
    internal = dict(task.node.driver_internal_info or {})
    internal[COMMAND_KEY] = {"id": str(uuidlib.uuid4()), "name": name, "params": params,
                             "sent": False}
    internal.pop("agent_progress", None)
    task.save(driver_internal_info=internal)


def boot_ramdisk(task: base.Task) -> None:
    """Boot the node into the agent (a fresh token) from the device its boot interface
    prepared (:attr:`base.BootInterface.agent_boot_device`: PXE, virtual media).

    The reboot does not wait for the BMC to report the power on: the agent's lookup is
    that report (and, should it not come, the conductor asks the BMC once
    ``power_state_change_timeout`` after the reboot). Polling a BMC through the seconds a
    power-on takes would hold the node, and a worker, for nothing."""
    boot = task.driver.boot
    boot.prepare_ramdisk(task)
    task.driver.management.set_boot_device(task, boot.agent_boot_device or "pxe",
                                           persistent=False)
    base.power_action(task, base.REBOOT, wait=False)


def tear_down_ramdisk(task: base.Task) -> None:
    """Power the node off out of the agent and revoke the agent's token."""
    base.power_action(task, base.POWER_OFF)
    task.driver.boot.clean_up_ramdisk(task)


def command_result(command: str, result: dict[str, Any]) -> StepResult:
    """DONE for a succeeded agent ``command``, else failed with the agent's error."""
    if result.get("status") == "succeeded":
        return DONE
    return failed(f"the agent's {command} failed: {result.get('error') or 'no error given'}")


def start_agent_boot(task: base.Task) -> None:
    """Record a new boot of the ramdisk: its boot files are served, its lookup answered,
    and no token is issued yet."""
    internal = dict(task.node.driver_internal_info or {})
    internal.pop(TOKEN_HASH_KEY, None)
    internal[BOOT_KEY] = str(uuidlib.uuid4())
    task.save(driver_internal_info=internal)


def end_agent_boot(task: base.Task) -> None:
    """The boot of the ramdisk is over: its token is revoked, its command dropped."""
    internal = dict(task.node.driver_internal_info or {})
    for key in (BOOT_KEY, TOKEN_HASH_KEY, COMMAND_KEY, "agent_progress",
                "agent_last_heartbeat"):
        internal.pop(key, None)
    task.save(driver_internal_info=internal)


def agent_params(node: Any, api: str) -> str:
    """The agent's kernel command line parameters for ``node``: the API's URL ``api``
    and the node (no secret), and the serial console."""
    return f"metalplane.api_url={api} metalplane.node={node.uuid} console=ttyS0"


class IPXEBoot(base.BootInterface):
    name = "ipxe"
    agent_boot_device = "pxe"

    def validate(self, task: base.Task) -> None:
        super().validate(task)
        if not boot_url(self.settings).startswith(("http://", "https://")):
            raise Invalid("boot_interface ipxe needs the boot server: set boot_listen (or "
                          "boot_unix_socket) and boot_server_url, an http(s) URL nodes "
                          "can reach")
        boot_mode(task.node, self.settings)  # a bad boot mode is refused here, named

    def prepare_ramdisk(self, task: base.Task) -> None:
        """A new boot of the ramdisk: its script is served, and no token is issued yet."""
        start_agent_boot(task)

    def clean_up_ramdisk(self, task: base.Task) -> None:
        """The boot is over: its script is no longer served and its token is revoked."""
        end_agent_boot(task)

    def prepare_instance(self, task: base.Task) -> None:
        task.driver.management.set_boot_device(task, "disk", persistent=True)

    def clean_up_instance(self, task: base.Task) -> None:
        return None

    def dhcp_options(self, task: base.Task) -> list[dict[str, Any]]:
        """iPXE gets the node's script URL; plain PXE firmware gets the iPXE binary of the
        node's boot mode over TFTP (:func:`~metalplane.drivers.boot_mode.ipxe_bootfile`,
        Ironic's ``dhcp_options_for_instance``). Raises :class:`Invalid` for a bad boot
        mode."""
        url = boot_url(self.settings)
        server = urllib.parse.urlsplit(url).hostname or ""
        opts = [{"opt_name": "tag:ipxe,bootfile-name",
                 "opt_value": f"{url}/boot/{task.node.uuid}.ipxe"},
                {"opt_name": "tag:!ipxe,bootfile-name",
                 "opt_value": ipxe_bootfile(task.node, self.settings)}]
        if server and server[0].isdigit():
            opts += [{"opt_name": "tftp-server", "opt_value": server},
                     {"opt_name": "server-ip-address", "opt_value": server}]
        return opts


def ipxe_script(node: Any, boot: str, api: str) -> str:
    """The iPXE script of ``node``: kernel and ramdisk from boot server ``boot``, and the
    agent's parameters: the API's URL ``api`` and the node (no secret: anyone on the
    provisioning network can fetch it).

    Kernel and ramdisk come from ``driver_info.deploy_kernel`` / ``deploy_ramdisk`` (Ironic's
    keys), else the boot server's defaults."""
    info = node.driver_info or {}
    kernel = info.get("deploy_kernel") or f"{boot}/files/agent.kernel"
    ramdisk = info.get("deploy_ramdisk") or f"{boot}/files/agent.initramfs"
    return (
        "#!ipxe\n"
        f"# metalplane: ramdisk agent for node {node.uuid}\n"
        f"kernel {kernel} initrd=agent.initramfs {agent_params(node, api)}\n"
        f"initrd {ramdisk}\n"
        "boot\n"
    )


def require_ipxe(task: base.Task, what: str) -> None:
    """Raise :class:`Invalid` unless the node's boot interface boots the agent (iPXE,
    virtual media), and, with ``ipxe``, unless the node's boot mode is valid (it picks the
    PXE first stage: :func:`~metalplane.drivers.boot_mode.boot_mode`)."""
    if not task.driver.boot.agent_boot_device:
        raise Invalid(f"{what} needs a boot_interface that boots the ramdisk agent (ipxe, "
                      f"redfish-virtual-media), not '{task.driver.boot.name}'")
    if isinstance(task.driver.boot, IPXEBoot):
        boot_mode(task.node, task.driver.boot.settings)


class AgentDeploy(base.DeployInterface):
    """The agent writes the image (raw, or qcow2 through qemu-img) and a config drive."""

    name = "direct"

    def validate(self, task: base.Task) -> None:
        super().validate(task)
        require_ipxe(task, "deploy_interface direct")

    def validate_deploy(self, task: base.Task) -> None:
        info = task.node.instance_info or {}
        missing = [k for k in ("image_source", "image_checksum") if not info.get(k)]
        if missing:
            raise Invalid(f"deploying needs instance_info/{', instance_info/'.join(missing)}")
        parse_checksum(info["image_checksum"], info.get("image_os_hash_algo"))
        fmt = info.get("image_disk_format", "raw")
        if fmt not in ("raw", "qcow2"):
            raise Invalid(f"instance_info/image_disk_format '{fmt}' is not raw or qcow2")

    def deploy(self, task: base.Task) -> StepResult:
        """Boot the ramdisk agent (its lookup reports the power on)."""
        self.validate_deploy(task)
        boot_ramdisk(task)
        return DONE

    @deploy_step(priority=80, requires_ramdisk=True)
    def write_image(self, task: base.Task) -> StepResult:
        """The agent writes the image and the config drive generated for this deploy."""
        info = task.node.instance_info or {}
        internal = task.node.driver_internal_info or {}
        image = cache_image(self.settings.data_dir / "images", str(info["image_source"]),
                            str(info["image_checksum"]), info.get("image_os_hash_algo"))
        queue_command(task, "deploy", {
            "image_url": f"{boot_url(self.settings)}/images/{image.name}",
            "image_size": image.size, "checksum_algo": image.algo, "checksum": image.checksum,
            "disk_format": info.get("image_disk_format", "raw"),
            # the drive the conductor generated from the user's input (not the input itself)
            "configdrive": internal.get(base.CONFIGDRIVE_KEY) or {},
        })
        return WAIT

    @deploy_step(priority=60)
    def prepare_instance_boot(self, task: base.Task) -> StepResult:
        task.driver.boot.prepare_instance(task)
        return DONE

    @deploy_step(priority=40)
    def tear_down_agent(self, task: base.Task) -> StepResult:
        tear_down_ramdisk(task)
        return DONE

    def tear_down(self, task: base.Task) -> None:
        base.power_action(task, base.POWER_OFF)
        task.driver.boot.clean_up_instance(task)

    def prepare_cleaning(self, task: base.Task) -> None:
        boot_ramdisk(task)

    def tear_down_cleaning(self, task: base.Task) -> None:
        tear_down_ramdisk(task)

    @clean_step(priority=10, requires_ramdisk=True)
    def erase_devices(self, task: base.Task) -> StepResult:
        """The agent erases the node's disks."""
        queue_command(task, "erase", {})
        return WAIT

    def agent_result(self, task: base.Task, step: Step, result: dict[str, Any]) -> StepResult:
        command = {"write_image": "deploy", "erase_devices": "erase"}.get(step.step)
        if command is None:
            return super().agent_result(task, step, result)
        return command_result(command, result)


class AgentInspect(base.InspectInterface):
    """In-band inspection: the agent reports its inventory in ironic-python-agent's shape
    (CPUs, memory, disks, NICs with raw LLDP, DMI identity, boot mode, BMC address)."""

    name = "agent"

    def validate(self, task: base.Task) -> None:
        super().validate(task)
        require_ipxe(task, "inspect_interface agent")

    def inspect_hardware(self, task: base.Task) -> StepResult:
        boot_ramdisk(task)
        queue_command(task, "inspect", {})
        return WAIT

    def tear_down_inspection(self, task: base.Task) -> None:
        tear_down_ramdisk(task)

    def agent_result(self, task: base.Task, step: Step, result: dict[str, Any]) -> StepResult:
        if step.step != "inspect_hardware":
            return super().agent_result(task, step, result)
        done = command_result("inspect", result)
        if done is not DONE:
            return done
        return done_with(parse_inventory(result.get("data") or {}))


def parse_inventory(data: dict[str, Any]) -> base.InspectionResult:
    """Properties, NIC MACs, LLDP wiring, the inventory and its plugin data from what the
    agent posted: ironic-python-agent's shape (:func:`metalplane.drivers.inventory.process`)."""
    done = process(data)
    return base.InspectionResult(done.properties, done.macs, done.wiring,
                                 inventory=done.inventory or None,
                                 plugin_data=done.plugin_data)
