# Runs in every kernel after 10-offline.py (IPython startup), only when the operator allows
# egress (docs/egress.md): the kernel still has no network interface to the host. This listens
# on the sandbox's own loopback and carries each connection, byte for byte, to the gateway's
# egress proxy on a unix socket in the kernel's runtime directory; the gateway checks every
# destination against the thread's policy. HTTP clients and pip find the proxy through the
# usual variables. Standard library only, and all inside one function (closures, not globals),
# so a cell that rebinds a name cannot break it.


def _gateway_egress() -> None:
    import os

    path = os.environ.get("KERNEL_EGRESS_SOCKET")
    if not path:  # egress is off: nothing more to import or start
        return
    import asyncio
    import socket
    import sys
    import threading

    chunk = 1 << 16
    unavailable = (b"HTTP/1.1 503 Egress unavailable: this kernel is not serving a thread\r\n"
                   b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    async def pump(reader, writer, both, outbound):
        """The client's end of file is a half-close (its answer still comes back); the
        gateway's ends the connection."""
        try:
            while data := await reader.read(chunk):
                writer.write(data)
                await writer.drain()
            if outbound and writer.can_write_eof():
                writer.write_eof()
                return
        except (ConnectionError, OSError):
            pass
        for each in both:
            each.close()

    async def forward(reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(path, limit=chunk)
        except OSError:
            writer.write(unavailable)
            writer.close()
            return
        both = (writer, up_writer)
        await asyncio.gather(pump(reader, up_writer, both, True),
                             pump(up_reader, writer, both, False))
        for each in both:
            each.close()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", int(os.environ.get("KERNEL_EGRESS_PORT") or 0)))
    except OSError:  # no private loopback (sandbox = none): any free port
        listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]

    def serve():
        async def main():
            server = await asyncio.start_server(forward, sock=listener, limit=chunk)
            async with server:
                await server.serve_forever()

        asyncio.run(main())

    threading.Thread(target=serve, name="gateway-egress", daemon=True).start()

    proxy = f"http://127.0.0.1:{port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ[name] = proxy
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "localhost,127.0.0.1,::1"
    # pip: through the proxy, into a directory the kernel can write (the image's packages are
    # read-only) and that imports see; a dot-directory, so no installed file is announced as a
    # file the cell made.
    target = os.path.join(os.environ.get("HOME", "/tmp"), ".packages")
    os.makedirs(target, exist_ok=True)
    if target not in sys.path:
        sys.path.append(target)
    index = os.environ.get("KERNEL_EGRESS_PIP_INDEX", "")
    tmp = os.environ.get("TMPDIR", "/tmp")
    lines = ["[global]", f"proxy = {proxy}", "disable-pip-version-check = true",
             f"cache-dir = {os.path.join(tmp, 'pip-cache')}"]
    if index:
        lines.append(f"index-url = {index}")
        if index.startswith("http://"):  # the operator chose a plain-HTTP index
            host = index.split("/")[2].rsplit(":", 1)[0]
            lines.append(f"trusted-host = {host}")
    lines += ["[install]", f"target = {target}", "upgrade = true"]
    config = os.path.join(tmp, "pip-egress.conf")
    with open(config, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.environ["PIP_CONFIG_FILE"] = config
    os.environ.pop("PIP_NO_INDEX", None)


_gateway_egress()
del _gateway_egress
