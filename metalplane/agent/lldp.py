"""LLDP neighbours read off the wire: which switch port each NIC is plugged into.

Listens with an AF_PACKET socket for EtherType 0x88cc frames on each interface, joined to
LLDP's nearest-bridge group address 01:80:c2:00:00:0e (``PACKET_ADD_MEMBERSHIP``, packet(7)):
a NIC that filters multicast in hardware, as QEMU's virtio-net does, drops the frames
otherwise (ironic-python-agent turns on promiscuous mode for the same reason). Parses the
mandatory TLVs. Source: IEEE 802.1AB-2016 section 8.5 (Chassis ID TLV type 1 with
subtype 4 = MAC address, 7 = locally assigned; Port ID TLV type 2 with subtype 3 = MAC,
5 = interface name, 7 = locally assigned; Port Description 4; System Name 5).
"""

from __future__ import annotations

import select
import socket
import struct
import time
from typing import Any

__all__ = ["listen", "listen_raw", "parse_lldp", "raw_tlvs"]

ETH_P_LLDP = 0x88CC
LLDP_GROUP = bytes.fromhex("0180c200000e")  # IEEE 802.1AB nearest bridge
SOL_PACKET, PACKET_ADD_MEMBERSHIP, PACKET_MR_MULTICAST = 263, 1, 0  # linux/if_packet.h


def _join_group(s: socket.socket, iface: str) -> None:
    """Receive LLDP's group address on ``iface`` (struct packet_mreq: ifindex, type,
    address length, address padded to 8 bytes). Raises OSError."""
    mreq = struct.pack("iHH8s", socket.if_nametoindex(iface), PACKET_MR_MULTICAST,
                       len(LLDP_GROUP), LLDP_GROUP)
    s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_lldp(frame: bytes) -> dict[str, Any]:
    """The neighbour an LLDP Ethernet frame describes:
    ``{"chassis_id", "port_id", "system_name", "port_description"}`` (absent TLVs left out).
    Raises ValueError for a frame that is not LLDP."""
    if len(frame) < 16 or int.from_bytes(frame[12:14], "big") != ETH_P_LLDP:
        raise ValueError("not an LLDP frame")
    out: dict[str, Any] = {}
    i = 14
    while i + 2 <= len(frame):
        header = int.from_bytes(frame[i:i + 2], "big")
        ttype, length = header >> 9, header & 0x1FF
        value = frame[i + 2:i + 2 + length]
        i += 2 + length
        if ttype == 0:  # End of LLDPDU
            break
        if ttype in (1, 2) and value:
            subtype, body = value[0], value[1:]
            is_mac = (ttype == 1 and subtype == 4) or (ttype == 2 and subtype == 3)
            text = _mac(body) if is_mac and len(body) == 6 else body.decode(errors="replace")
            out["chassis_id" if ttype == 1 else "port_id"] = text
        elif ttype == 4:
            out["port_description"] = value.decode(errors="replace")
        elif ttype == 5:
            out["system_name"] = value.decode(errors="replace")
    return out


def raw_tlvs(frame: bytes) -> list[list[Any]]:
    """The TLVs of an LLDP Ethernet frame as ironic-python-agent reports them:
    ``[[type, "hex of the value"], ...]`` in frame order, the End TLV included. Raises
    ValueError for a frame that is not LLDP."""
    if len(frame) < 16 or int.from_bytes(frame[12:14], "big") != ETH_P_LLDP:
        raise ValueError("not an LLDP frame")
    out: list[list[Any]] = []
    buff = frame[14:]
    while len(buff) >= 2:
        header = int.from_bytes(buff[:2], "big")
        ttype, length = header >> 9, header & 0x1FF
        out.append([ttype, buff[2:2 + length].hex()])
        buff = buff[2 + length:]
        if ttype == 0:
            break
    return out


def listen(interfaces: list[str], seconds: float) -> dict[str, dict[str, Any]]:
    """Wait up to ``seconds`` for one LLDP frame per interface; ``{iface: neighbour}``
    (:func:`parse_lldp`) for those that heard one. Needs CAP_NET_RAW; an interface that
    cannot be opened is skipped."""
    return {iface: parse_lldp(frame) for iface, frame in listen_raw(interfaces, seconds).items()}


def listen_raw(interfaces: list[str], seconds: float) -> dict[str, bytes]:
    """Wait up to ``seconds`` for one LLDP frame per interface; ``{iface: frame}`` for
    those that heard one. Needs CAP_NET_RAW; an interface that cannot be opened is
    skipped."""
    socks: dict[socket.socket, str] = {}
    for iface in interfaces:
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_LLDP))
            s.bind((iface, 0))
            _join_group(s, iface)
            s.setblocking(False)
            socks[s] = iface
        except OSError:
            continue
    found: dict[str, bytes] = {}
    deadline = time.monotonic() + seconds
    try:
        while socks and time.monotonic() < deadline:
            ready, _, _ = select.select(list(socks), [], [], max(0.0, deadline - time.monotonic()))
            for s in ready:
                try:
                    frame = s.recv(9000)
                    parse_lldp(frame)  # an LLDP frame, else keep listening
                except (OSError, ValueError):
                    continue
                found[socks[s]] = frame
                s.close()
                del socks[s]
    finally:
        for s in socks:
            s.close()
    return found
