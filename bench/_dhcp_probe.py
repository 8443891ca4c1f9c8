"""A DHCP prober for bench/ovn.py: sends a DHCPDISCOVER every 5 ms from an interface and
prints the wall-clock time (``time.time()``) of the first DHCPOFFER for its transaction.

Usage (as root, inside the namespace): ``python3 _dhcp_probe.py IFACE MAC TIMEOUT``; exit
status 1 when no offer came within TIMEOUT seconds. Raw AF_PACKET sockets, so the packets
are built here: Ethernet, IPv4 (RFC 791), UDP (RFC 768, checksum 0), BOOTP/DHCP (RFC 2131,
options RFC 2132: 53 message type, 55 parameter list).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def discover(mac: bytes, xid: int) -> bytes:
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4),
                        bytes(4), bytes(4), bytes(4), mac + bytes(10), bytes(64), bytes(128))
    options = b"\x63\x82\x53\x63" + bytes([53, 1, 1, 55, 4, 1, 3, 6, 67, 255])
    payload = bootp + options
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4),
                     b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + b"\x08\x00" + ip + udp


def is_offer(frame: bytes, xid: int) -> bool:
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return False
    ihl = (frame[14] & 0x0F) * 4
    udp = frame[14 + ihl:]
    if struct.unpack("!H", udp[2:4])[0] != 68:
        return False
    bootp = udp[8:]
    if bootp[0] != 2 or struct.unpack("!I", bootp[4:8])[0] != xid:
        return False
    opts = bootp[240:]
    i = 0
    while i + 1 < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if opts[i] == 53:
            return opts[i + 2] == 2
        i += 2 + opts[i + 1]
    return False


def main() -> int:
    iface, mac_text, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    mac = bytes.fromhex(mac_text.replace(":", ""))
    xid = int.from_bytes(os.urandom(4), "big")
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind((iface, 0))
    packet = discover(mac, xid)
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_send:
            sock.send(packet)
            next_send = now + 0.005
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if ready:
            frame = sock.recv(4096)
            if is_offer(frame, xid):
                print(f"{time.time():.6f}")
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
