"""Threads in other languages (gateway/languages): bash through the same sandbox, limits,
files, timeouts, interrupts and envelopes as Python; unknown and unavailable languages refused
with clear errors.

The pure half; the gateway half is tests/kernel/test_languages.py."""

from __future__ import annotations

import shutil

import pytest

from gateway.errors import LanguageMismatch, UnknownLanguage
from gateway.execution import languages
from support.host import needs_linux

pytestmark = needs_linux


# -- pure: the registry ------------------------------------------------------------------------
def test_find_knows_python_and_bash_and_names_them_when_refusing():
    assert languages.find("python").kernel_name == "python3"
    assert languages.find("bash").fence_open == "```bash\n"
    supported = r"python, bash, javascript, typescript, r\)"
    with pytest.raises(UnknownLanguage, match=r"'cobol' is not supported.*" + supported):
        languages.find("cobol")
    for bad in ("", "Python", "../python3", "a" * 40, 3, None):
        with pytest.raises(UnknownLanguage):
            languages.find(bad)


def test_the_request_validates_its_language():
    from gateway.wire.protocol import parse_request

    execute = parse_request('{"type": "execute", "thread_id": "t", "call_id": "c", '
                            '"code": "ls", "language": "bash"}')
    assert execute.language == "bash"
    delta = parse_request('{"type": "code_delta", "thread_id": "t", "call_id": "c", '
                          '"delta": "ls", "format": "raw", "language": "bash"}')
    assert delta.language == "bash"
    with pytest.raises(UnknownLanguage) as refused:
        parse_request('{"type": "execute", "thread_id": "t", "call_id": "c", "code": "x", '
                      '"language": "klingon"}')
    assert refused.value.code == "unknown_language"


def test_probe_names_a_missing_module(tmp_path):
    (tmp_path / "nokernel").mkdir()
    (tmp_path / "nokernel" / "kernel.json").write_text("{}")
    missing = languages.Language("x", "nokernel", "x", "", module="no_such_module_here")
    reason = languages.unavailable_reason(missing, tmp_path, shutil.which("python3"))
    assert "no_such_module_here" in reason and "pip install no-such-module-here" in reason


def test_the_session_refuses_a_switch():
    from gateway.threads.session import ThreadSession

    session = ThreadSession.__new__(ThreadSession)
    session.kernel_watchers = set()  # what __init__ would have made
    session.thread_id, session.kernel, session.language = "t", object(), None
    session._pool_for = lambda name: None
    with pytest.raises(LanguageMismatch, match="runs python, not bash"):
        session.choose_language("bash")  # a kernel already runs (an upload came first)


def test_the_bridge_wraps_only_tcp_kernels():
    assert languages.find("javascript").tcp_bridge and languages.find("typescript").tcp_bridge
    assert languages.find("typescript").kernel_name == "deno"
    assert languages.find("typescript").fence_open == "```typescript\n"
    assert not languages.find("python").tcp_bridge and not languages.find("bash").tcp_bridge


def test_a_missing_deno_is_named(tmp_path):
    (tmp_path / "deno").mkdir()
    (tmp_path / "deno" / "kernel.json").write_text("{}")
    absent = languages.Language("javascript", "deno", "javascript", "", program="no-such-deno")
    reason = languages.unavailable_reason(absent, tmp_path, shutil.which("python3"))
    assert "'no-such-deno' is not installed" in reason


# -- R: IRkernel speaks ipc itself ---------------------------------------------------------------
def test_a_missing_irkernel_is_named(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "kernel.json").write_text("{}")
    without = languages.Language("r", "ir", "r", "", check=("false",),
                                 check_hint=languages.find("r").check_hint)
    reason = languages.unavailable_reason(without, tmp_path, shutil.which("python3"))
    assert "IRkernel is not installed (Debian: r-cran-irkernel)" in reason
