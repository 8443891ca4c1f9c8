"""Which dnsmasq serves which provider network, from ``settings.dhcp_bindings``.

``dhcp_bindings`` is ``network=netns:interface`` pairs, comma separated (``netns`` empty
for the host's own namespace), e.g. ``provisioning=mplab-svc-prov:eth0``. Networks without
a binding get no DHCP from metalplane. Instances start on first use and stop with the
conductor. With the ``ovn`` network backend, OVN answers DHCP itself: dnsmasq then serves
only TFTP (``--port=0``, no DHCP range) on each bound interface, for PXE firmware that
loads ``undionly.kpxe``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from metalplane.common.config import Settings
from metalplane.common.exceptions import Invalid
from metalplane.dhcp.dnsmasq import DnsmasqServer

__all__ = ["DhcpManager", "parse_bindings"]


def parse_bindings(spec: str) -> dict[str, tuple[str | None, str]]:
    """``{network: (netns or None, interface)}``. Raises :class:`Invalid`."""
    out: dict[str, tuple[str | None, str]] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        net, sep, where = item.partition("=")
        netns, colon, iface = where.rpartition(":")
        if not sep or not net or not iface or not colon:
            raise Invalid(f"dhcp_bindings entry '{item}' must be network=netns:interface")
        out[net.strip()] = (netns.strip() or None, iface.strip())
    return out


class DhcpManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bindings = parse_bindings(settings.dhcp_bindings)
        self._servers: dict[str, DnsmasqServer] = {}
        self._lock = threading.Lock()
        self.tftp_only = settings.network_backend == "ovn"

    def serves(self, *names: str) -> str | None:
        """The binding key among ``names`` (a network's name or id), if any."""
        return next((n for n in names if n in self.bindings), None)

    def server(self, key: str, cidr: str) -> DnsmasqServer:
        with self._lock:
            srv = self._servers.get(key)
            if srv is None:
                netns, iface = self.bindings[key]
                srv = DnsmasqServer(key, iface, cidr, Path(self.settings.data_dir) / "dhcp" / key,
                                    netns=netns, tftp_root=self.settings.tftp_root or None,
                                    restart_delay=self.settings.dhcp_restart_delay)
                self._servers[key] = srv
            return srv

    def add(self, key: str, cidr: str, port_id: str, mac: str, ip: str | None,
            opts: list[dict[str, Any]]) -> None:
        """Serve ``mac`` its address and options (TFTP-only: make sure TFTP runs)."""
        if self.tftp_only:
            self.server(key, cidr).start_tftp()
            return
        self.server(key, cidr).add_host(port_id, mac, ip, opts)

    def set_discovery(self, key: str, cidr: str, first: str | None, last: str | None = None,
                      opts: list[tuple[str, str]] | None = None) -> bool:
        """Answer unknown MACs on ``key``'s network (see
        :meth:`DnsmasqServer.set_discovery`); False where dnsmasq serves no DHCP (the ovn
        backend: OVN answers only the ports it knows)."""
        if self.tftp_only:
            return False
        self.server(key, cidr).set_discovery(first, last, opts)
        return True

    def remove(self, key: str, mac: str) -> None:
        with self._lock:
            srv = self._servers.get(key)
        if srv is not None:
            srv.remove_host(mac)

    def stop(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for srv in servers:
            srv.stop()
