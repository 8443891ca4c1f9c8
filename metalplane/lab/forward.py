"""A TCP to unix-socket forwarder, run inside a lab namespace.

The server listens on loopback and on a unix socket; a unix socket is reachable from every
network namespace (it lives in the filesystem), so this forwarder, started in a namespace
with ``ip netns exec``, makes the API and boot server reachable at a namespace address
without any traffic leaving the namespaces the lab created.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(host: str, port: int, unix: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            ureader, uwriter = await asyncio.open_unix_connection(unix)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, uwriter), _pipe(ureader, writer))

    server = await asyncio.start_server(handle, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--listen", required=True, help="HOST:PORT inside the namespace")
    p.add_argument("--unix", required=True, help="the server's unix socket")
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, int(port), args.unix))


if __name__ == "__main__":
    main()
