"""Exposing the gateway: origin checks at the handshake, the refusal to serve clear text beyond
loopback, tokens rotated by SIGHUP in a real ``gateway serve``, and no token in any log line.

The gateway half; the pure half is tests/unit/test_exposure_rules.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway import auth
from gateway.client import GatewayClient
from gateway.config import Settings

GATEWAY = str(Path(sys.executable).parent / "gateway")


async def handshake_status(url: str, token: str | None, origin: str | None = None) -> int:
    """The HTTP status of a websocket handshake: 101 when it opened."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with connect(url, additional_headers=headers, origin=origin, open_timeout=60):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# -- origins, against the shared in-process gateway -------------------------------------------

@pytest.mark.asyncio(loop_scope="session")
async def test_foreign_origin_is_refused_before_the_token_is_looked_at(running, monkeypatch):
    looked_up: list[object] = []
    real = auth.identity_for
    monkeypatch.setattr(auth, "identity_for",
                        lambda tokens, token: looked_up.append(token) or real(tokens, token))
    port = running.server.port
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null",
                   f"https://127.0.0.1:{port}.evil.example"):
        assert await handshake_status(running.url, "tok-alice", origin) == 403
        assert await handshake_status(running.url, "wrong", origin) == 403, \
            "a bad token gets the same answer: the token was not looked at"
    assert looked_up == []
    admin = running.url.replace("/ws", "/admin")
    assert await handshake_status(admin, "anything", "http://evil.example") == 403


@pytest.mark.asyncio(loop_scope="session")
async def test_same_origin_and_non_browser_clients_are_accepted(running):
    port = running.server.port
    assert await handshake_status(running.url, "tok-alice", f"http://127.0.0.1:{port}") == 101
    assert await handshake_status(running.url, "tok-alice") == 101
    assert await handshake_status(running.url, "wrong", f"http://127.0.0.1:{port}") == 401


@pytest.mark.asyncio(loop_scope="session")
async def test_allowed_origins_admit_another_site(running):
    settings = running.gateway.settings
    saved = settings.allowed_origins
    settings.allowed_origins = ("https://app.example.com",)
    try:
        assert await handshake_status(running.url, "tok-alice", "https://app.example.com") == 101
        assert await handshake_status(running.url, "tok-alice", "https://b.example.com") == 403
    finally:
        settings.allowed_origins = saved


# -- secure by default -------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_non_loopback_bind_without_tls_is_refused(tmp_path, host):
    result = subprocess.run(
        [GATEWAY, "serve", "--host", host, "--port", "0", "--data-dir", str(tmp_path / "d"),
         "--token", "alice:" + auth.digest("t")],
        capture_output=True, text=True, timeout=120, env=_clean_env())
    assert result.returncode == 2
    assert "listening" not in result.stdout
    message = result.stderr
    assert "refusing to serve" in message and "without TLS" in message
    for advice in ("--tls-cert", "--insecure-http", "Exposing the gateway", "127.0.0.1"):
        assert advice in message


def test_token_new_prints_the_token_once_and_its_hashed_entry():
    result = subprocess.run([GATEWAY, "token", "new", "carol"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    token = re.search(r"^token:\s+(\S+)$", result.stdout, re.M).group(1)
    line = re.search(r"^config:\s+(\S+)$", result.stdout, re.M).group(1)
    assert line == auth.config_line("carol", token) and token not in line
    assert auth.identity_for(Settings(tokens={line.split(":", 1)[1]: "carol"}).tokens,
                             token) == "carol"


def test_a_default_gateway_listens_on_one_port_only(tmp_path):
    """Nothing listens that the operator did not ask for: one port serves everything."""
    env = {**_clean_env(), "GATEWAY_TOKENS": "alice:" + auth.digest("t")}
    with open(tmp_path / "stderr", "w") as errors:
        process = subprocess.Popen(
            [GATEWAY, "serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
             "--pool-size", "0"], stdout=subprocess.PIPE, stderr=errors, env=env, text=True)
    try:
        line = process.stdout.readline()  # printed once every listener is bound
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, (tmp_path / "stderr").read_text())
        listening = {tuple(c.laddr) for c in psutil.Process(process.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {("127.0.0.1", int(match.group(1)))}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait()


# -- rotation by SIGHUP in a real `gateway serve`, logs captured at DEBUG ------------------------

def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}


def _write_config(path: Path, token: str, admin: str) -> None:
    path.write_text(f'tokens = "{auth.config_line("alice", token)}"\n'
                    f'admin_token = "{auth.digest(admin)}"\n'
                    'log_level = "DEBUG"\n')


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def _output_arrives(client: GatewayClient, thread_id: str, call_id: str, text: str) -> None:
    while True:
        envelope = await client.next_envelope(thread_id, call_id, timeout=120)
        chunk = envelope["chunk"]
        assert chunk["type"] not in ("status", "error"), envelope
        if chunk["type"] == "hot_code_output" and text in chunk["content"]:
            return


async def _log_shows(path: Path, text: str) -> None:
    """Wait until the gateway's log has ``text`` (a signal's effect has no other event)."""
    for _ in range(2400):  # a bound of about two minutes, so a broken reload fails the test
        if text in path.read_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the log")


WAIT_FOR_GO = ("import os, time\nprint('waiting', flush=True)\n"
               "while not os.path.exists('go'):\n    time.sleep(0.05)\nprint('went')")


@pytest.mark.asyncio(loop_scope="session")
async def test_sighup_rotates_tokens_and_no_token_reaches_the_logs(tmp_path):
    old, new, admin, wrong = (auth.new_token() for _ in range(4))
    config_file, log_file = tmp_path / "gateway.toml", tmp_path / "gateway.log"
    _write_config(config_file, old, admin)
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            [GATEWAY, "serve", "--config", str(config_file), "--port", "0", "--data-dir",
             str(tmp_path / "data"), "--pool-size", "1", "--set", "memory_limit=536870912"],
            stdout=subprocess.PIPE, stderr=log, env=_clean_env(), text=True)
    try:
        line = await asyncio.to_thread(process.stdout.readline)
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        url, http = f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}"

        # Things that could leak a token: a refused handshake with ?token=, downloads with the
        # token in the query and the header, an admin call.
        assert await handshake_status(f"{url}?token={wrong}", None) == 401
        assert (await asyncio.to_thread(_get, f"{http}/files/file_{'0' * 32}?token={old}"))[0] \
            == 404
        assert (await asyncio.to_thread(_get, f"{http}/files/file_{'0' * 32}", wrong))[0] == 401

        first = await GatewayClient.connect(url, old)
        call = await first.thread("rotated").execute(WAIT_FOR_GO)
        await _output_arrives(first, "rotated", call, "waiting")

        # A file that does not parse changes nothing (the old token still works) ...
        config_file.write_text('tokens = "alice:sha256:not-closed\n')
        process.send_signal(signal.SIGHUP)
        await _log_shows(log_file, "reload failed, settings unchanged")
        assert await handshake_status(url, old) == 101

        # ... then the rotation.
        _write_config(config_file, new, admin)
        process.send_signal(signal.SIGHUP)
        await first.connection.wait_closed()  # the reload closes what the old token opened
        assert first.connection.close_code == 1008
        await first.close()

        assert await handshake_status(url, old) == 401
        assert await handshake_status(f"{url}?token={old}", None) == 401
        async with await GatewayClient.connect(url, new) as second:
            thread = second.thread("rotated")
            await thread.subscribe()
            assert (await thread.upload("go", b"1"))["type"] == "file_uploaded"
            result = await thread.collect(call, timeout=120)
        assert result.state == "complete" and result.output == "went\n", \
            "the cell started before the rotation ran on and finished"

        stats = await asyncio.to_thread(subprocess.run, [
            GATEWAY, "pool", "stats", "--json", "--url", f"ws://127.0.0.1:{port}/admin",
            "--admin-token", admin], capture_output=True, text=True, timeout=120)
        assert stats.returncode == 0, stats.stderr
        status, health = await asyncio.to_thread(_get, f"{http}/healthz")
        assert status == 200 and json.loads(health)["status"] == "ok"

        proc = Path(f"/proc/{process.pid}")
        visible = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes() + \
            health.encode() + config_file.read_bytes()
        shown = subprocess.run([GATEWAY, "config", "show", "--config", str(config_file)],
                               capture_output=True, text=True, timeout=60, env=_clean_env())
        visible += shown.stdout.encode()
        for secret in (old, new, admin, wrong):
            assert secret.encode() not in visible
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 120)
    logs = log_file.read_text()
    assert " DEBUG " in logs, "the test means something only if DEBUG lines were written"
    assert "settings reloaded" in logs and "'connections_closed': 1" in logs
    for secret in (old, new, admin, wrong):
        assert secret not in logs


@pytest.mark.asyncio(loop_scope="session")
async def test_a_clear_token_on_the_command_line_leaves_the_process_list(tmp_path):
    token = auth.new_token()
    process = subprocess.Popen(
        [GATEWAY, "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--pool-size",
         "0", "--token", f"alice:{token}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_clean_env(), text=True)
    try:
        line = await asyncio.to_thread(process.stdout.readline)
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        proc = Path(f"/proc/{process.pid}")
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline and b"--token" not in cmdline
        assert token.encode() not in (proc / "cmdline").read_bytes()
        assert token.encode() not in (proc / "environ").read_bytes()
        assert await handshake_status(f"ws://127.0.0.1:{port}/ws", token) == 101
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 120)
    assert "process list" in process.stderr.read()
