"""Redfish power, management and out-of-band inspection, through sushy.

driver_info keys (Ironic's): ``redfish_address`` (``http[s]://host[:port]``, required),
``redfish_system_id`` (``/redfish/v1/Systems/<id>``; may be left out when the BMC has one
system), ``redfish_username``, ``redfish_password``, ``redfish_verify_ca`` (bool or a CA
bundle path, default true: verified against the system's trust store, or against the
``redfish_verify_ca`` setting's bundle when it is set; false turns verification off for
that node only). Sources: DMTF Redfish ``ComputerSystem`` schema (Reset action,
``Boot.BootSourceOverrideTarget``/``BootSourceOverrideEnabled``, ``ProcessorSummary``,
``MemorySummary``, ``EthernetInterfaces``), sushy's resource API.

Connections are cached per (address, user, password, verify) like Ironic's SessionCache,
so a power sync over many nodes of one BMC does not log in for each. Within one task (one
holding of the node's lock) the System resource is fetched once and reused while its last
reading is under ``_FRESH`` seconds old: setting the boot device and then rebooting, or
powering off, switching to disk and powering on, cost one GET of the System instead of one
per call. Power state waits poll with a backoff (first after 1 s, up to 3 s apart), as
Ironic's do: a BMC takes seconds to change power, and each poll is a new HTTP connection
(sushy asks for ``Connection: close``, for BMCs that choke on long-lived ones).

Every exchange is bounded: TCP connect within ``settings.bmc_connect_timeout`` and each
read of the answer within ``settings.bmc_read_timeout`` (sushy's ``Connector`` passes them to
requests as its ``(connect, read)`` timeout). Each attempt holds one of the system's
``bmc_max_concurrent_calls`` slots (:func:`base.bmc_slot`, keyed by service address and
system id). Connecting (sushy reads the
service root, and may log in) is serialised per connection key, never across BMCs.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any

import requests
import sushy
from sushy import connector as sushy_connector
from sushy import exceptions as sushy_exc

from metalplane.common.exceptions import BMCError, Invalid
from metalplane.drivers import base
from metalplane.drivers.steps import StepResult, done_with

__all__ = ["RedfishInspect", "RedfishManagement", "RedfishMixin", "RedfishPower",
           "parse_driver_info"]

_TRANSIENT: tuple[type[BaseException], ...] = (
    sushy_exc.ConnectionError,
    sushy_exc.ServerSideError,
)
_PERMANENT: tuple[type[BaseException], ...] = (sushy_exc.SushyError,)

_BOOT_TO_REDFISH = {
    "pxe": sushy.BootSource.PXE,
    "disk": sushy.BootSource.HDD,
    "cdrom": sushy.BootSource.CD,
    "bios": sushy.BootSource.BIOS_SETUP,
}
_REDFISH_TO_BOOT = {v: k for k, v in _BOOT_TO_REDFISH.items()}

_PROPERTIES = {
    "redfish_address": "The BMC's URL, http[s]://host[:port]. Required.",
    "redfish_system_id": "Path of the system, e.g. /redfish/v1/Systems/1. Optional if the "
    "BMC manages one system.",
    "redfish_username": "User name on the BMC. Optional.",
    "redfish_password": "Password on the BMC; required when redfish_username is set.",
    "redfish_verify_ca": "true, false, or a CA bundle path. Default true.",
}


def parse_driver_info(info: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    """Validate and normalise Redfish driver_info.

    Returns ``{"address", "system_id", "username", "password", "verify"}``.
    Raises :class:`Invalid` naming the bad key.
    """
    base.require_keys(info, ["redfish_address"], "the redfish hardware type", partial)
    if partial and not info.get("redfish_address"):
        info = {**info, "redfish_address": "placeholder.invalid"}  # check the other keys alone
    address = str(info["redfish_address"]).strip()
    parsed = urllib.parse.urlsplit(address if "://" in address else f"https://{address}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid(
            f"driver_info/redfish_address {address!r} is not an http:// or https:// URL "
            "with a host"
        )
    try:
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise Invalid(f"driver_info/redfish_address {address!r} has an invalid port") from None
    system_id = info.get("redfish_system_id") or None
    if system_id is not None and not str(system_id).startswith("/"):
        raise Invalid(
            f"driver_info/redfish_system_id {system_id!r} must be a path such as "
            "/redfish/v1/Systems/1"
        )
    username = info.get("redfish_username") or None
    password = info.get("redfish_password") or None
    if username and not password:
        raise Invalid("driver_info/redfish_password is required when redfish_username is set")
    verify: bool | str = True
    raw = info.get("redfish_verify_ca", True)
    if isinstance(raw, bool):
        verify = raw
    elif str(raw).lower() in ("true", "1", "yes", "on"):
        verify = True
    elif str(raw).lower() in ("false", "0", "no", "off"):
        verify = False
    else:
        verify = str(raw)
    return {
        "address": urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, "", "", "")),
        "system_id": system_id,
        "username": username,
        "password": password,
        "verify": verify,
    }


class _Connector(sushy_connector.Connector):  # type: ignore[misc]
    """sushy's connector, with what requests takes from the environment read once per BMC.

    requests consults the environment on every request: the proxy variables (scanning all
    of ``os.environ``, twice), ``~/.netrc`` and the CA bundle variables, 0.07-0.15 ms of the
    0.9-1.2 ms of CPU a BMC exchange costs (against sushy-tools' emulator). For one BMC URL
    the answer does not change, so it is taken when the connection is made, as requests
    would for that URL: the proxy (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, unless
    ``NO_PROXY`` names the BMC) and, when the certificate is verified against the default
    bundle, ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``. Credentials come from driver_info
    only (never ``~/.netrc``). The environment of a running server does not change, so
    nothing else differs.
    """

    def __init__(self, url: str, verify: bool | str, **kwargs: Any) -> None:
        with requests.Session() as probe:
            env = probe.merge_environment_settings(url, {}, None, verify, None)
        super().__init__(url, verify=env["verify"], **kwargs)
        self._session.trust_env = False
        self._session.proxies.update(env["proxies"])


_ConnKey = tuple[str, str | None, str | None, bool | str, float, float]
_MAX_CONNECTIONS = 1024  # connections kept; the oldest is dropped beyond this
_connections: dict[_ConnKey, Any] = {}  # key -> sushy.Sushy
_connectors: dict[_ConnKey, _Connector] = {}  # its connector, closed when it is dropped
_connecting: dict[_ConnKey, threading.Lock] = {}
_registry_lock = threading.Lock()  # guards the two dicts only; never held on the network


def _conn_key(settings: Any, info: dict[str, Any]) -> _ConnKey:
    verify: bool | str = info["verify"]
    bundle = str(getattr(settings, "redfish_verify_ca", "") or "")
    if verify is True and bundle:
        verify = bundle  # no redfish_verify_ca of the node's own (or "true"): the setting's
    return (info["address"], info["username"], info["password"], verify,
            float(settings.bmc_connect_timeout), float(settings.bmc_read_timeout))


def _connect(key: _ConnKey, wait: float) -> Any:
    """The cached ``sushy.Sushy`` for ``key`` (address, username, password, verify, connect
    timeout s, read timeout s), made now if there is none. Only callers for the same key
    wait for a connection being made, at most ``wait`` s. Raises sushy's errors
    (``ConnectionError`` for a BMC that does not answer in time) and :class:`base.BMCError`
    when another caller's connect to that key outlasts ``wait``."""
    with _registry_lock:
        conn = _connections.get(key)
        if conn is not None:
            return conn
        lock = _connecting.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=wait):
        raise BMCError(f"connecting to the BMC at {key[0]} is taking longer than "
                       f"{wait:g} s; try again later")
    try:
        with _registry_lock:
            conn = _connections.get(key)
        if conn is not None:
            return conn
        address, username, password, verify, connect_timeout, read_timeout = key
        # Retries are ours (bmc_call, with backoff and a clear last_error); sushy's own
        # defaults (10 retries, 3 s apart, on every call) would hide a dead BMC for half a
        # minute. requests deprecates None credentials; an empty pair means "no auth" to
        # the emulator and to BMCs that allow anonymous access.
        connector = _Connector(address, verify=verify, server_side_retries=1,
                               server_side_retries_delay=1,
                               default_request_timeout=read_timeout,
                               connect_timeout=connect_timeout)
        conn = sushy.Sushy(address, username=username or "", password=password or "",
                           connector=connector)
        with _registry_lock:
            _connections[key] = conn
            _connectors[key] = connector
            while len(_connections) > _MAX_CONNECTIONS:
                _drop(next(iter(_connections)))
        return conn
    finally:
        lock.release()


def _drop(key: _ConnKey) -> None:
    """Forget ``key``'s connection, its connect lock and its connector, closing the
    connector's HTTP session (a changed password or an evicted BMC leaves nothing
    behind). Called with ``_registry_lock`` held."""
    _connections.pop(key, None)
    _connecting.pop(key, None)
    connector = _connectors.pop(key, None)
    if connector is not None:
        connector.close()


def _forget(key: _ConnKey | None = None) -> None:
    """Drop the cached connection of ``key`` (a stale session: reconnect next time), or all
    of them."""
    with _registry_lock:
        for k in list(_connections) if key is None else [key]:
            _drop(k)


_FRESH = 10.0  # s: how old a System reading a task may act on without a new GET
_CACHE_KEY = "redfish_system"


def _system(task: base.Task, iface: RedfishMixin, max_age: float = _FRESH) -> Any:
    """The node's sushy ``System``, fetched once per task and refreshed when its reading is
    older than ``max_age`` s (0: always read now). Raises :class:`base.BMCError`."""
    cached = task.cache.get(_CACHE_KEY)
    if cached is None:
        system = _fetch(task, iface)
        _read(task, system)
        return system
    system, read_at = cached
    if max_age <= 0 or time.monotonic() - read_at > max_age:
        _refresh(task, iface, system)
    return system


def _read(task: base.Task, system: Any) -> None:
    """Note that ``system`` was read from the BMC just now."""
    task.cache[_CACHE_KEY] = (system, time.monotonic())


def _refresh(task: base.Task, iface: RedfishMixin, system: Any) -> None:
    """Read ``system`` from the BMC again. Raises :class:`base.BMCError`."""
    base.bmc_call(iface.settings, f"Redfish refresh on node {task.node.uuid}", system.refresh,
                  _TRANSIENT, _PERMANENT, bmc=_address(task, iface))
    _read(task, system)


def _address(task: base.Task, iface: RedfishMixin) -> str:
    """The key of the task's node's call slots: its Redfish service and system, so the
    systems behind one service (a chassis manager, an emulator) do not share two slots."""
    return _slot_key(parse_driver_info(iface.redfish_info(task.driver_info)))


def _slot_key(info: dict[str, Any]) -> str:
    return f"{info['address']} {info['system_id']}"


def _fetch(task: base.Task, iface: RedfishMixin) -> Any:
    settings = iface.settings
    info = parse_driver_info(iface.redfish_info(task.driver_info))
    key = _conn_key(settings, info)

    def get() -> Any:
        conn = _connect(key, settings.bmc_slot_wait)
        try:
            return conn.get_system(info["system_id"])
        except _TRANSIENT:
            _forget(key)  # a cached session may have gone stale (BMC restart): reconnect
            raise

    return base.bmc_call(settings, f"Redfish: reaching system of node {task.node.uuid} at "
                         f"{info['address']}", get, _TRANSIENT, _PERMANENT,
                         bmc=_slot_key(info))


def _power_of(system: Any) -> str:
    state = system.power_state
    if state in (sushy.PowerState.ON, sushy.PowerState.POWERING_OFF):
        return base.POWER_ON
    return base.POWER_OFF


class RedfishMixin(base.BaseInterface):
    """What the Redfish interfaces share: driver_info parsing (through
    :meth:`redfish_info`, which a vendor's interfaces override) and bounded BMC calls."""

    def get_properties(self) -> dict[str, str]:
        return dict(_PROPERTIES)

    def redfish_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """The node's driver_info in the ``redfish_*`` keys :func:`parse_driver_info` reads.
        A vendor's hardware type (its own module) maps its keys here; Redfish's are kept."""
        return info

    def validate_driver_info(self, info: dict[str, Any], partial: bool = False) -> None:
        parse_driver_info(self.redfish_info(info), partial)

    def _call(self, task: base.Task, what: str, fn: Any) -> Any:
        return base.bmc_call(self.settings, f"Redfish {what} on node {task.node.uuid}", fn,
                             _TRANSIENT, _PERMANENT, bmc=_address(task, self))


class RedfishPower(RedfishMixin, base.PowerInterface):
    name = "redfish"

    def get_power_state(self, task: base.Task) -> str:
        """The power state read from the BMC now (never a reading kept by the task)."""
        system = _system(task, self, max_age=0.0)
        return str(self._call(task, "power state", lambda: _power_of(system)))

    def _wait(self, task: base.Task, system: Any, target: str) -> None:
        def reached() -> bool:
            _refresh(task, self, system)
            return _power_of(system) == target

        timeout = self.settings.power_state_change_timeout
        base.wait_for(reached, timeout, min(1.0, timeout / 10),
                      f"node {task.node.uuid} to reach '{target}'", longest=3.0)

    def set_power_state(self, task: base.Task, state: str) -> None:
        if state not in (base.POWER_ON, base.POWER_OFF):
            raise Invalid(f"unsupported power state {state!r}")
        system = _system(task, self)
        if _power_of(system) == state:
            return
        reset = sushy.ResetType.ON if state == base.POWER_ON else sushy.ResetType.FORCE_OFF
        self._call(task, f"reset {reset.value}", lambda: system.reset_system(reset))
        self._wait(task, system, state)

    def reboot(self, task: base.Task, wait: bool = True) -> bool:
        system = _system(task, self)
        if _power_of(system) == base.POWER_ON:
            reset = sushy.ResetType.FORCE_RESTART
        else:
            reset = sushy.ResetType.ON
        self._call(task, f"reset {reset.value}", lambda: system.reset_system(reset))
        if wait:
            self._wait(task, system, base.POWER_ON)
        return wait


class RedfishManagement(RedfishMixin, base.ManagementInterface):
    name = "redfish"

    def set_boot_device(self, task: base.Task, device: str, persistent: bool = False) -> None:
        if device not in _BOOT_TO_REDFISH:
            raise Invalid(f"boot device {device!r} is not one of {', '.join(_BOOT_TO_REDFISH)}")
        system = _system(task, self)
        enabled = (sushy.BootSourceOverrideEnabled.CONTINUOUS if persistent
                   else sushy.BootSourceOverrideEnabled.ONCE)
        self._call(task, f"set boot device {device}",
                   lambda: system.set_system_boot_options(_BOOT_TO_REDFISH[device],
                                                          enabled=enabled))

    def get_boot_device(self, task: base.Task) -> dict[str, Any]:
        system = _system(task, self)
        boot = system.boot
        enabled = boot.enabled
        return {
            "boot_device": _REDFISH_TO_BOOT.get(boot.target),
            "persistent": (None if enabled is None
                           else enabled == sushy.BootSourceOverrideEnabled.CONTINUOUS),
        }


_ARCH = {
    sushy.ProcessorArchitecture.X86: "x86_64",
    sushy.ProcessorArchitecture.ARM: "aarch64",
    sushy.ProcessorArchitecture.IA_64: "ia64",
    sushy.ProcessorArchitecture.MIPS: "mips",
}


class RedfishInspect(RedfishMixin, base.InspectInterface):
    """Out-of-band inspection: CPUs and arch, memory, local disk size and NIC MACs.

    A value the BMC does not publish is left out of the result (and so left unchanged on
    the node) rather than guessed.
    """

    name = "redfish"

    def inspect_hardware(self, task: base.Task) -> StepResult:
        system = _system(task, self)
        props: dict[str, Any] = {}

        def optional(fn: Any) -> Any:
            try:
                return self._call(task, "inspection", fn)
            except Exception:
                return None

        summary = optional(lambda: system.processors.summary)
        if summary is not None:
            if summary.count:
                props["cpus"] = int(summary.count)
            if summary.architecture in _ARCH:
                props["cpu_arch"] = _ARCH[summary.architecture]
        if "cpus" not in props:
            count = optional(lambda: system.processor_summary.count)
            if count:
                props["cpus"] = int(count)
        mem = optional(lambda: system.memory_summary)
        if mem is not None and getattr(mem, "size_gib", None):
            props["memory_mb"] = int(float(mem.size_gib) * 1024)
        disks = optional(lambda: system.simple_storage.disks_sizes_bytes)
        if disks:
            # Ironic reports the largest disk less 1 GiB for partitioning slack.
            props["local_gb"] = max(0, max(disks) // (1024**3) - 1)
        nics = optional(lambda: system.ethernet_interfaces.summary) or {}
        macs = sorted(str(m).lower() for m in nics)
        return done_with(base.InspectionResult(
            properties=props, macs=macs,
            inventory=_inventory(system, props, macs, disks or [], optional),
            plugin_data={"macs": macs}))


def _inventory(system: Any, props: dict[str, Any], macs: list[str], disks: list[int],
               optional: Any) -> dict[str, Any]:
    """The inventory in ironic-python-agent's shape from what the BMC publishes (as
    Ironic's redfish inspect stores one): ``cpu`` {count, architecture}, ``memory``
    {physical_mb}, ``disks`` [{size}], ``interfaces`` [{name, mac_address}],
    ``system_vendor`` {manufacturer, product_name, serial_number}; unknown values null."""
    vendor = {
        "manufacturer": optional(lambda: system.manufacturer),
        "product_name": optional(lambda: system.model),
        "serial_number": optional(lambda: system.serial_number),
    }
    return {
        "cpu": {"count": props.get("cpus"), "architecture": props.get("cpu_arch"),
                "model_name": None, "frequency": None, "flags": []},
        "memory": {"physical_mb": props.get("memory_mb"),
                   "total": (props["memory_mb"] << 20) if props.get("memory_mb") else None},
        "disks": [{"name": f"disk{i}", "size": size} for i, size in enumerate(disks)],
        "interfaces": [{"name": f"nic{i}", "mac_address": mac} for i, mac in enumerate(macs)],
        "system_vendor": vendor,
        "boot": {"current_boot_mode": None, "pxe_interface": None},
    }
