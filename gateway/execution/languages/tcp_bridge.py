"""Runs inside the sandbox, in front of a kernel that speaks ZeroMQ over TCP only (Deno's).

The gateway talks to every kernel over ZeroMQ's ``ipc`` transport: unix sockets in the
kernel's runtime directory, the only path shared with the sandbox. A TCP port inside the
sandbox lives in its private network namespace, which the gateway cannot reach (and must not:
no sandbox gets a network). So this script, started by the kernel interpreter as the sandboxed
command itself (same uid, seccomp filter, cgroup and namespaces as the kernel), listens on the
``ipc`` socket paths named by the gateway's connection file and forwards each connection, byte
for byte (ZMTP is the same over both transports), to the kernel's port on the sandbox's own
loopback. It then runs the kernel with a TCP copy of the connection file (same key) and exits
with it.

Usage: python tcp_bridge.py CONNECTION_FILE -- KERNEL_ARGV... (the argument equal to
CONNECTION_FILE is replaced by the TCP copy's path). Standard library only: it runs under the
kernel interpreter, where the gateway's package is not importable.
"""

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
LOOPBACK = "127.0.0.1"
CHUNK = 1 << 16


def free_ports(count):
    """``count`` distinct free ports on this sandbox's loopback (its own: nothing else runs)."""
    held = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


async def pump(reader, writer):
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def forward(port, kernel, unix_reader, unix_writer):
    """One gateway connection to the kernel's TCP port (retried until the kernel listens)."""
    while kernel.returncode is None:
        try:
            tcp_reader, tcp_writer = await asyncio.open_connection(LOOPBACK, port)
            break
        except OSError:
            await asyncio.sleep(0.02)
    else:
        unix_writer.close()
        return
    await asyncio.gather(pump(unix_reader, tcp_writer), pump(tcp_reader, unix_writer))


async def main(connection_file, argv):
    with open(connection_file) as f:
        info = json.load(f)
    if info.get("transport") != "ipc":
        sys.exit(f"tcp_bridge: expected an ipc connection file, got {info.get('transport')!r}")
    ports = free_ports(len(CHANNELS))
    tcp_info = dict(info, transport="tcp", ip=LOOPBACK)
    for channel, port in zip(CHANNELS, ports, strict=True):
        tcp_info[f"{channel}_port"] = port
    fd, tcp_file = tempfile.mkstemp(prefix="kernel-tcp-", suffix=".json")  # private /tmp
    with os.fdopen(fd, "w") as f:
        json.dump(tcp_info, f)
    argv = [tcp_file if arg == connection_file else arg for arg in argv]
    kernel = await asyncio.create_subprocess_exec(*argv)
    servers = []
    os.umask(0o077)  # the sockets: this uid's alone (the gateway is root)
    for channel, port in zip(CHANNELS, ports, strict=True):
        path = f"{info['ip']}-{info[f'{channel}_port']}"
        if os.path.exists(path):
            os.unlink(path)
        servers.append(await asyncio.start_unix_server(
            lambda r, w, port=port: forward(port, kernel, r, w), path=path))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, lambda signum=signum: kernel.returncode is None
                                and kernel.send_signal(signum))
    code = await kernel.wait()
    for server in servers:
        server.close()
    return code


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: tcp_bridge.py CONNECTION_FILE -- KERNEL_ARGV...")
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[3:])) or 0)
