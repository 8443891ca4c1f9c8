"""Configuration of one metalplane process.

Values come, lowest priority first, from the defaults below, ``METALPLANE_<NAME>`` environment
variables (e.g. ``METALPLANE_DATA_DIR``, ``METALPLANE_POWER_SYNC_INTERVAL``) and the command
line. Durations are in seconds. This module reads nothing but the environment.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

from metalplane.common.exceptions import Invalid
from metalplane.common.strutils import bool_from_string

__all__ = ["Settings", "default_data_dir"]

AUTH_STRATEGIES = ("noauth", "http_basic")


def default_data_dir() -> Path:
    """``$METALPLANE_DATA_DIR``, else ``$XDG_DATA_HOME/metalplane``, else
    ``~/.local/share/metalplane``."""
    if env := os.environ.get("METALPLANE_DATA_DIR"):
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "metalplane"


@dataclasses.dataclass
class Settings:
    """All tunables of the server, API and conductor.

    ``database_url`` empty means SQLite (WAL) at ``<data_dir>/metalplane.db``; any SQLAlchemy
    URL works, e.g. ``postgresql+psycopg://user:pw@127.0.0.1/metalplane``.
    ``fake_delays`` maps an interface name of the fake hardware type (power, management, boot,
    deploy, inspect, bios) to seconds it sleeps per call, like Ironic's ``[fake]`` options.
    """

    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 6385
    # the Networking API's own listener, as Neutron's (0: none; /v2.0 is on ``port`` too)
    network_port: int = 9696
    # the Kubernetes-style API's own listener (kubectl: BareMetalHosts, Secrets), on
    # ``host`` with the API's TLS and authentication (0: none)
    k8s_port: int = 6443
    max_request_body_size: int = 114688  # bytes, as Ironic's [api]max_request_body_size
    auth_strategy: str = ""  # empty: noauth on loopback, http_basic elsewhere
    # TLS for the API's listeners (PEM files: the certificate chain, its private key)
    tls_cert_file: str = ""
    tls_key_file: str = ""
    users_file: str = ""  # empty: <data_dir>/htpasswd
    conductor_hostname: str = dataclasses.field(default_factory=socket.gethostname)
    workers: int = 100
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 60.0
    power_sync_interval: float = 60.0
    timeout_check_interval: float = 10.0
    # how often a step waiting on its BMC (steps.POLL: BIOS settings applied at the next
    # boot) is asked whether it is over
    step_poll_interval: float = 10.0
    inspect_wait_timeout: float = 1800.0
    clean_callback_timeout: float = 1800.0
    deploy_callback_timeout: float = 1800.0
    power_state_change_timeout: float = 60.0
    bmc_retries: int = 3
    bmc_retry_wait: float = 1.0
    # every BMC exchange is bounded: TCP connect, then each read of the answer (Redfish);
    # a BMC that accepts and never answers costs bmc_read_timeout per attempt
    bmc_connect_timeout: float = 5.0
    bmc_read_timeout: float = 15.0
    # calls in flight to one BMC address at once; a call waits bmc_slot_wait s for a slot
    # and then fails (BMCError, retryable), so one slow BMC cannot take many workers
    bmc_max_concurrent_calls: int = 2
    bmc_slot_wait: float = 10.0
    # how long an API request waits for its BMC (on a conductor worker) before it answers
    # 503 with Retry-After; the call itself goes on in the background
    api_bmc_wait: float = 10.0
    fake_delays: dict[str, float] = dataclasses.field(default_factory=dict)
    # networking (Neutron ML2 [ml2_type_*] and Ironic [neutron] equivalents)
    network_vlan_ranges: str = "physnet1:1000:1999"  # physnet:min:max, comma separated
    flat_networks: str = "*"  # physnets allowed for flat networks; * = any
    vxlan_vni_ranges: str = "10000:19999"
    geneve_vni_ranges: str = "20000:29999"
    tenant_network_types: str = "vlan"  # tried in order for networks without provider attrs
    parking_vlan: int = 4094  # access VLAN of switch ports no network uses
    default_network_interface: str = "flat"  # noop, flat or neutron
    # Ironic's [DEFAULT]default_<kind>_interface: a node created without that interface
    # gets this one ("" = its hardware type's own default); it must be one the node's
    # hardware type supports, else the node is refused (as Ironic refuses it)
    default_boot_interface: str = ""  # e.g. ipxe (hardware types default to fake)
    default_deploy_interface: str = ""  # e.g. direct
    default_inspect_interface: str = ""  # e.g. agent
    inspection_network: str = ""  # network name or UUID
    cleaning_network: str = ""
    provisioning_network: str = ""
    rescuing_network: str = ""
    network_sync_interval: float = 60.0  # switch drift repair (and OVN's, with that backend)
    # the network's control plane: "ovs" (the switch driver and dnsmasq alone) or "ovn"
    # (OVN's Northbound database for logical switches, DHCP, routers and ACLs, plus the
    # switch driver for the top-of-rack switch ports)
    network_backend: str = "ovs"
    ovn_nb_connection: str = ""  # OVSDB address of OVN's Northbound database
    ovn_nb_timeout: float = 10.0  # s a change waits for the NB database (e.g. restarting)
    # enforce security groups as OpenFlow rules on the ToR's switch ports (ovs switches),
    # which also filters traffic between nodes on one VLAN; OVN's ACLs see routed traffic
    tor_acl: bool = True
    # chassis names (system-id) that host external ports and router gateways, by priority
    ovn_gateway_chassis: str = ""
    # boot server and agent. The boot server (iPXE scripts, images, kernels, ramdisks) has
    # listeners of its own, bound to the provider networks' addresses (host:port, comma
    # separated) and/or a unix socket (the lab's namespaces); it never answers on the API's
    boot_listen: str = ""
    boot_unix_socket: str = ""
    # serve the boot listeners over TLS too, with the API's certificate (iPXE must trust its
    # CA: an iPXE built with it embedded; PXE firmware's own TFTP stays as it is)
    boot_tls: bool = False
    boot_server_url: str = ""  # how nodes reach the boot server; empty: http://<boot_listen>
    # how BMCs reach the boot server, for the virtual media images they fetch (Ironic's
    # [deploy]external_http_url); empty: boot_server_url
    external_http_url: str = ""
    agent_api_url: str = ""  # how the agent reaches the API; empty: <scheme>://host:port
    # the agent reports a finished command at once; beats carry liveness and progress
    agent_heartbeat_interval: float = 10.0
    dhcp_bindings: str = ""  # network=netns:interface[,...] (netns may be empty)
    dhcp_restart_delay: float = 2.0  # s a host removal waits to share dnsmasq's restart
    tftp_root: str = "/usr/lib/ipxe"
    # the first stage PXE firmware loads over TFTP from tftp_root, by the node's boot mode
    # (Ironic's [pxe]ipxe_bootfile_name and uefi_ipxe_bootfile_name; for UEFI, ipxe.efi if
    # snponly.efi does not work with a NIC's firmware), and the boot mode of a node that
    # names none in its capabilities or instance_info (Ironic's [deploy]default_boot_mode,
    # which is uefi there; bios here)
    ipxe_bootfile_name: str = "undionly.kpxe"
    uefi_ipxe_bootfile_name: str = "snponly.efi"
    default_boot_mode: str = "bios"
    unix_socket: str = ""  # also serve the API on this unix socket (the lab's namespaces)
    # auto-discovery (Ironic's [auto_discovery]): machines nobody enrolled that PXE-boot on
    # the inspection network get the agent and are enrolled from what it reports (off by
    # default); the driver they get, the state they are left in (enroll or manageable),
    # the DHCP range unknown MACs lease from ("start,end"; empty: the largest block of the
    # inspection subnet outside its allocation pools and gateway), and at most this many
    # nodes enrolled by discovery per minute (the endpoint takes no credentials)
    discovery_enabled: bool = False
    discovery_driver: str = "fake-hardware"
    discovery_provision_state: str = "enroll"
    discovery_dhcp_range: str = ""
    discovery_max_per_minute: int = 30
    # the CA bundle that verifies Redfish BMCs' certificates when a node's driver_info has
    # no redfish_verify_ca (empty: the system's trust store, requests' default)
    redfish_verify_ca: str = ""

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Build settings from ``METALPLANE_*`` variables, then ``overrides`` (None ignored).

        Raises :class:`Invalid` naming the variable when a value does not parse.
        """
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = os.environ.get(f"METALPLANE_{field.name.upper()}")
            if raw is None:
                continue
            values[field.name] = _parse(field.name, field.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise :class:`Invalid` for values that cannot work."""
        self.data_dir = Path(self.data_dir)
        if self.auth_strategy and self.auth_strategy not in AUTH_STRATEGIES:
            raise Invalid(
                f"auth_strategy must be one of {', '.join(AUTH_STRATEGIES)}, "
                f"not {self.auth_strategy!r}"
            )
        for address in self.boot_listen_addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise Invalid(f"boot_listen takes host:port[,host:port...], not '{address}'")
        if self.external_http_url and not self.external_http_url.startswith(
                ("http://", "https://")):
            raise Invalid(f"external_http_url must be an http(s) URL, not "
                          f"{self.external_http_url!r}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise Invalid("TLS needs both tls_cert_file and tls_key_file")
        if self.boot_tls and not self.tls_cert_file:
            raise Invalid("boot_tls needs tls_cert_file and tls_key_file")
        for name in ("tls_cert_file", "tls_key_file"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                raise Invalid(f"{name} {value} is not a readable file")
        if self.workers < 1:
            raise Invalid("workers must be at least 1")
        if not 1 <= self.parking_vlan <= 4094:
            raise Invalid("parking_vlan must be a VLAN ID, 1-4094")
        if self.default_network_interface not in ("noop", "flat", "neutron"):
            raise Invalid("default_network_interface must be noop, flat or neutron")
        if self.network_backend not in ("ovs", "ovn"):
            raise Invalid(f"network_backend must be ovs or ovn, not {self.network_backend!r}")
        if self.network_backend == "ovn":
            if not self.ovn_nb_connection.startswith(("unix:", "tcp:", "ssl:")):
                raise Invalid("network_backend ovn needs ovn_nb_connection, the Northbound "
                              "database's OVSDB address: unix:/path, tcp:host:port or "
                              "ssl:host:port")
            if not self.gateway_chassis:
                raise Invalid("network_backend ovn needs ovn_gateway_chassis: the chassis "
                              "(system-id) that serve bare-metal ports, comma separated")
        if not 0 <= self.network_port <= 65535:
            raise Invalid("network_port must be a TCP port, 1-65535, or 0 for none")
        if self.network_port and self.network_port == self.port:
            raise Invalid(f"network_port and port are both {self.port}: the Networking "
                          "listener needs a port of its own (or 0 for none)")
        if not 0 <= self.k8s_port <= 65535:
            raise Invalid("k8s_port must be a TCP port, 1-65535, or 0 for none")
        if self.k8s_port and self.k8s_port in (self.port, self.network_port):
            raise Invalid(f"k8s_port {self.k8s_port} is also the API's port or "
                          "network_port: the Kubernetes-style listener needs a port of its "
                          "own (or 0 for none)")
        if self.max_request_body_size < 1024:
            raise Invalid("max_request_body_size must be at least 1024 bytes")
        if not 0 <= self.dhcp_restart_delay <= 60:
            raise Invalid("dhcp_restart_delay must be 0-60 seconds")
        for name in ("bmc_connect_timeout", "bmc_read_timeout", "bmc_slot_wait",
                     "api_bmc_wait"):
            if not getattr(self, name) > 0:
                raise Invalid(f"{name} must be a positive number of seconds")
        if self.discovery_provision_state not in ("enroll", "manageable"):
            raise Invalid("discovery_provision_state must be enroll or manageable, not "
                          f"{self.discovery_provision_state!r}")
        if self.discovery_max_per_minute < 1:
            raise Invalid("discovery_max_per_minute must be at least 1")
        if self.redfish_verify_ca and not Path(self.redfish_verify_ca).is_file():
            raise Invalid(f"redfish_verify_ca {self.redfish_verify_ca} is not a readable file")
        if self.bmc_max_concurrent_calls < 1:
            raise Invalid("bmc_max_concurrent_calls must be at least 1")
        if self.default_boot_mode not in ("bios", "uefi"):
            raise Invalid(f"default_boot_mode must be bios or uefi, not {self.default_boot_mode!r}")
        for name in ("ipxe_bootfile_name", "uefi_ipxe_bootfile_name"):
            value = getattr(self, name)
            if not value or any(c in value for c in ", \n") or value.startswith("/"):
                raise Invalid(f"{name} must be a file name under tftp_root, not {value!r}")

    @property
    def effective_auth_strategy(self) -> str:
        """The strategy in force: the configured one, else noauth only on loopback."""
        if self.auth_strategy:
            return self.auth_strategy
        return "noauth" if self.on_loopback else "http_basic"

    @property
    def gateway_chassis(self) -> list[str]:
        """``ovn_gateway_chassis`` as a list, highest priority first."""
        return [c.strip() for c in self.ovn_gateway_chassis.split(",") if c.strip()]

    @property
    def boot_listen_addresses(self) -> list[str]:
        """``boot_listen`` as a list of ``host:port``."""
        return [a.strip() for a in self.boot_listen.split(",") if a.strip()]

    @property
    def scheme(self) -> str:
        """``https`` when the API is served over TLS, else ``http``."""
        return "https" if self.tls_cert_file else "http"

    @property
    def on_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "::1", "localhost")

    @property
    def insecure_transport(self) -> str:
        """The warning a server logs at start when passwords would cross the network in
        clear (``http_basic`` beyond loopback without TLS), else ``""``."""
        if self.scheme == "https" or self.on_loopback or self.effective_auth_strategy == "noauth":
            return ""
        return (f"{self.effective_auth_strategy} passwords cross the network in clear on "
                f"{self.host}:{self.port}: serve the API over TLS (--tls-cert-file, "
                "--tls-key-file)")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'metalplane.db'}"

    @property
    def effective_users_file(self) -> Path:
        return Path(self.users_file) if self.users_file else self.data_dir / "htpasswd"


def _parse(name: str, type_name: Any, raw: str) -> Any:
    try:
        if type_name in ("int", int):
            return int(raw)
        if type_name in ("float", float):
            return float(raw)
        if type_name in ("Path", Path):
            return Path(raw)
        if type_name in ("bool", bool):
            return bool_from_string(raw)
        if str(type_name).startswith("dict"):
            # "deploy=1.5,power=0.2"
            out: dict[str, float] = {}
            for item in filter(None, (p.strip() for p in raw.split(","))):
                key, _, val = item.partition("=")
                out[key.strip()] = float(val)
            return out
    except ValueError as exc:
        raise Invalid(f"METALPLANE_{name.upper()}={raw!r} does not parse: {exc}") from None
    return raw
