"""IPMI power and boot device through pyghmi (IPMI 2.0 over LAN, RMCP+ on UDP).

driver_info keys (Ironic's): ``ipmi_address`` (required), ``ipmi_port`` (default 623),
``ipmi_username``, ``ipmi_password`` (required when a user name is set). Sources: IPMI v2.0
specification, Chassis Control (22.3) and Set System Boot Options (28.12); pyghmi's
``pyghmi.ipmi.command.Command``.

Bounded in time: pyghmi has no timeout settings of its own to pass, but gives up by itself
on a BMC that does not answer (about 5 s for a login, measured against a UDP port that
swallows every packet; a command resends for a few seconds likewise), and a call waits at
most ``settings.bmc_slot_wait`` s for the BMC's session and for one of its
``bmc_max_concurrent_calls`` slots, then fails with :class:`BMCError` (retryable).
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

from pyghmi import exceptions as pyghmi_exc
from pyghmi.ipmi import command as ipmi_command

from metalplane.common.exceptions import BMCError, Invalid
from metalplane.drivers import base

__all__ = ["IPMIManagement", "IPMIPower", "parse_driver_info"]

_TRANSIENT: tuple[type[BaseException], ...] = (pyghmi_exc.IpmiException, OSError, socket.error)
_BOOT_TO_IPMI = {"pxe": "network", "disk": "hd", "cdrom": "optical", "bios": "setup"}
_IPMI_TO_BOOT = {v: k for k, v in _BOOT_TO_IPMI.items()}

_PROPERTIES = {
    "ipmi_address": "IP address or host name of the BMC. Required.",
    "ipmi_port": "UDP port of the BMC. Default 623.",
    "ipmi_username": "User name on the BMC. Optional.",
    "ipmi_password": "Password on the BMC; required when ipmi_username is set.",
}


def parse_driver_info(info: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    """Validate IPMI driver_info; return ``{"address", "port", "username", "password"}``.

    Raises :class:`Invalid` naming the bad key.
    """
    base.require_keys(info, ["ipmi_address"], "the ipmi hardware type", partial)
    if partial and not info.get("ipmi_address"):
        info = {**info, "ipmi_address": "placeholder.invalid"}  # check the other keys alone
    try:
        port = int(info.get("ipmi_port") or 623)
    except (TypeError, ValueError):
        raise Invalid(f"driver_info/ipmi_port {info.get('ipmi_port')!r} is not a number") from None
    if not 0 < port < 65536:
        raise Invalid(f"driver_info/ipmi_port {port} is out of range 1-65535")
    username = info.get("ipmi_username") or ""
    password = info.get("ipmi_password") or ""
    if username and not password:
        raise Invalid("driver_info/ipmi_password is required when ipmi_username is set")
    return {"address": str(info["ipmi_address"]), "port": port, "username": username,
            "password": password}


# One logged-in pyghmi Command per BMC, reused (fewer RMCP+ logins, as a BMC has few
# session slots), and one call at a time per BMC: a pyghmi session is not safe for
# concurrent requests. Different BMCs are driven in parallel.
_sessions: dict[tuple[str, int, str, str], Any] = {}
_locks: dict[tuple[str, int, str, str], threading.Lock] = {}
_registry_lock = threading.Lock()


def _session_lock(key: tuple[str, int, str, str]) -> threading.Lock:
    with _registry_lock:
        return _locks.setdefault(key, threading.Lock())


class _IPMIMixin(base.BaseInterface):
    def get_properties(self) -> dict[str, str]:
        return dict(_PROPERTIES)

    def validate_driver_info(self, info: dict[str, Any], partial: bool = False) -> None:
        parse_driver_info(info, partial)

    def _run(self, task: base.Task, what: str, fn: Any) -> Any:
        info = parse_driver_info(task.driver_info)

        key = (info["address"], info["port"], info["username"], info["password"])

        def call() -> Any:
            lock = _session_lock(key)
            if not lock.acquire(timeout=self.settings.bmc_slot_wait):
                raise BMCError(f"the IPMI session to {info['address']}:{info['port']} was "
                               f"still busy after {self.settings.bmc_slot_wait:g} s "
                               "(bmc_slot_wait); try again later")
            try:
                cmd = _sessions.get(key)
                try:
                    if cmd is None:
                        try:
                            cmd = ipmi_command.Command(bmc=info["address"],
                                                       userid=info["username"],
                                                       password=info["password"],
                                                       port=info["port"])
                        except struct.error as exc:  # pyghmi reading RAKP2 (IPMI 2.0 13.21)
                            raise BMCError(
                                f"IPMI {what}: the BMC at {info['address']}:{info['port']} "
                                "answered the RMCP+ session with other authentication "
                                "algorithms than the SHA-256 ones proposed and pyghmi cannot "
                                "follow (e.g. virtualbmc, which speaks only cipher suite 3 "
                                "but accepts the proposal)") from exc
                        _sessions[key] = cmd
                    result = fn(cmd)
                    if isinstance(result, dict) and "error" in result:
                        raise pyghmi_exc.IpmiException(str(result["error"]))
                except _TRANSIENT:
                    _sessions.pop(key, None)  # log in afresh on the next attempt
                    raise
                return result
            finally:
                lock.release()

        return base.bmc_call(self.settings, f"IPMI {what} on node {task.node.uuid} at "
                             f"{info['address']}:{info['port']}", call, _TRANSIENT,
                             bmc=f"{info['address']}:{info['port']}")


class IPMIPower(_IPMIMixin, base.PowerInterface):
    name = "ipmi"

    def get_power_state(self, task: base.Task) -> str:
        result = self._run(task, "get power", lambda c: c.get_power())
        return base.POWER_ON if result.get("powerstate") == "on" else base.POWER_OFF

    def set_power_state(self, task: base.Task, state: str) -> None:
        if state not in (base.POWER_ON, base.POWER_OFF):
            raise Invalid(f"unsupported power state {state!r}")
        target = "on" if state == base.POWER_ON else "off"
        timeout = int(self.settings.power_state_change_timeout)
        self._run(task, f"power {target}", lambda c: c.set_power(target, wait=timeout))

    def reboot(self, task: base.Task, wait: bool = True) -> bool:
        # pyghmi: wait=N polls up to N s for the new state; False returns at once
        until: int | bool = int(self.settings.power_state_change_timeout) if wait else False
        current = self.get_power_state(task)
        if current == base.POWER_ON:
            # a reset: the power stays on (pyghmi does not wait for it either)
            self._run(task, "power cycle", lambda c: c.set_power("boot", wait=until))
            return True
        self._run(task, "power on", lambda c: c.set_power("on", wait=until))
        return wait


class IPMIManagement(_IPMIMixin, base.ManagementInterface):
    name = "ipmi"

    def set_boot_device(self, task: base.Task, device: str, persistent: bool = False) -> None:
        if device not in _BOOT_TO_IPMI:
            raise Invalid(f"boot device {device!r} is not one of {', '.join(_BOOT_TO_IPMI)}")
        self._run(task, f"set boot device {device}",
                  lambda c: c.set_bootdev(_BOOT_TO_IPMI[device], persist=persistent))

    def get_boot_device(self, task: base.Task) -> dict[str, Any]:
        result = self._run(task, "get boot device", lambda c: c.get_bootdev())
        return {"boot_device": _IPMI_TO_BOOT.get(result.get("bootdev")),
                "persistent": result.get("persistent")}
