"""gateway.hotcode: the incremental code extractor and the hot_code chunk stream (no kernels).

The central properties, checked over generated code and argument documents split at random points
and at every point:

* what the extractor yields, concatenated, is exactly what orjson decodes as ``code``;
* nothing is late: after any prefix of the arguments, everything certain has been yielded (a slow
  reference decoder says what is certain), and nothing is early (never half an escape);
* the chunk stream is ``[FENCE_OPEN, pieces..., FENCE_CLOSE]``, pieces non-empty, joining to the
  executed code, with the closer sent as soon as the code string's closing quote arrives.
"""

from __future__ import annotations

import json
import random

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.errors import ProtocolError
from gateway.wire.envelopes import FENCE_CLOSE, FENCE_OPEN
from gateway.wire.hotcode import CodeExtractor, HotCodeStream

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- generators

# Any character a str can hold in valid JSON text (lone surrogates cannot be encoded).
chars = st.characters(blacklist_categories=("Cs",))
TRICKY = [
    '"',
    "\\",
    "}",
    "{",
    "]",
    "[",
    ",",
    ":",
    "\r\n",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x1f",
    "\x7f",
    "/",
    "😀",
    "𝄞",
    "é",
    "東京",
    "\u2028",
    "\ufeff",
    "code",
    '"code": "',
    "\\u",
    "\\n",
    " ",
]
code_text = st.one_of(
    st.text(chars, max_size=60),
    st.lists(st.sampled_from(TRICKY), max_size=25).map("".join),
    st.lists(st.one_of(st.sampled_from(TRICKY), st.text(chars, max_size=4)), max_size=20).map(
        "".join
    ),
)
WS = ["", " ", "\n", "\t", "\r\n", "  \n\t "]
ws = st.sampled_from(WS)
SEPARATORS = [(",", ":"), (", ", ": "), (" ,\n", " :\t"), (",\r\n  ", ":  ")]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    code_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        # Nested objects may well have a "code" key: only the top-level one counts.
        st.dictionaries(st.one_of(st.just("code"), st.text(chars, max_size=6)), inner, max_size=3),
    ),
    max_leaves=8,
)
other_keys = st.text(chars, max_size=8).filter(lambda k: k != "code")


def u_escape(ch: str, upper: bool) -> str:
    """``\\uXXXX`` for ``ch`` (a surrogate pair beyond the BMP), in either hex case."""
    units = ch.encode("utf-16-be")
    out = "".join(
        f"\\u{int.from_bytes(units[i : i + 2], 'big'):04x}" for i in range(0, len(units), 2)
    )
    return out.upper().replace("\\U", "\\u") if upper else out


SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def encode_string(s: str, rnd: random.Random) -> str:
    """A JSON string literal for ``s``, choosing a random valid spelling for every character.

    Covers what json.dumps never writes: ``\\/``, upper-case hex, ``\\u`` escapes of plain letters.
    """
    out = ['"']
    for ch in s:
        options = [u_escape(ch, False), u_escape(ch, True)]
        if ch in SHORT:
            options.append(SHORT[ch])
        elif ord(ch) >= 0x20:
            options += [ch, ch, ch]
        if ch == "/":
            options.append("\\/")
        out.append(rnd.choice(options))
    out.append('"')
    return "".join(out)


@st.composite
def arguments(draw, code_strategy=code_text):
    """(JSON arguments text, code, start, end): the code string literal is ``text[start:end]``."""
    code = draw(code_strategy)
    ensure_ascii = draw(st.booleans())
    item_sep, key_sep = draw(st.sampled_from(SEPARATORS))
    if draw(st.integers(0, 3)) == 0:
        literal = encode_string(code, draw(st.randoms(use_true_random=False)))
    else:
        literal = json.dumps(code, ensure_ascii=ensure_ascii)
    before = draw(st.lists(st.tuples(other_keys, json_values), max_size=3))
    after = draw(st.lists(st.tuples(other_keys, json_values), max_size=3))

    def member(key: str, value: object) -> str:
        dumped = json.dumps(value, ensure_ascii=ensure_ascii, separators=(item_sep, key_sep))
        return json.dumps(key, ensure_ascii=ensure_ascii) + draw(ws) + ":" + draw(ws) + dumped

    text = "{" + draw(ws)
    for key, value in before:
        text += member(key, value) + draw(ws) + "," + draw(ws)
    text += '"code"' + draw(ws) + ":" + draw(ws)
    start = len(text)
    text += literal
    end = len(text)
    for key, value in after:
        text += draw(ws) + "," + draw(ws) + member(key, value)
    text += draw(ws) + "}" + draw(ws)
    return text, code, start, end


def splits(text: str, rnd: random.Random, max_piece: int) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        size = rnd.randint(1, max_piece)
        pieces.append(text[i : i + size])
        i += size
    return pieces


# ----------------------------------------------------------------------------- reference


def certain_prefix(text: str, start: int, end: int, code: str, k: int) -> str:
    """Slow reference: the code text that is certain once ``text[:k]`` has been fed.

    Decode the string literal's content seen so far, trimmed back by as few characters as make it
    a complete literal (an escape cut short is not certain); a trailing high surrogate is not
    certain either (its low half has yet to come).
    """
    if k <= start:
        return ""
    if k >= end - 1:
        return code
    content = text[start + 1 : k]
    for trim in range(13):
        try:
            decoded = json.loads('"' + content[: len(content) - trim] + '"')
        except json.JSONDecodeError:
            continue
        if decoded and "\ud800" <= decoded[-1] <= "\udbff":
            decoded = decoded[:-1]
        return decoded
    raise AssertionError(f"reference could not decode {content!r}")  # pragma: no cover


def run_pieces(pieces: list[str], fmt: str = "json") -> tuple[str, str]:
    """Feed everything, then finish: (concatenated yields, finished code)."""
    extractor = CodeExtractor(fmt)  # type: ignore[arg-type]
    yielded = "".join(extractor.feed(p) for p in pieces)
    return yielded, extractor.finish()


def check_stream(pieces: list[str], code: str, closing_piece: int | None) -> None:
    """The chunk sequence of ``pieces``: opener, non-empty pieces, closer; joins to ``code``.

    ``closing_piece``: index of the piece that contains the code string's closing quote (the closer
    must be emitted by that very feed), or None for raw (closer only at close()).
    """
    stream = HotCodeStream("json" if closing_piece is not None else "raw")
    chunks = []
    for index, piece in enumerate(pieces):
        new = stream.feed(piece)
        for chunk in new:
            assert chunk["type"] == "hot_code" and set(chunk) == {"type", "content"}
        chunks += new
        if closing_piece is not None:
            assert stream.closed == (index >= closing_piece)
            if index == closing_piece:
                assert new and new[-1]["content"] == FENCE_CLOSE
    executed, rest = stream.close()
    chunks += rest
    assert stream.close() == (executed, [])  # idempotent: the fence closes exactly once
    contents = [c["content"] for c in chunks]
    assert executed == code
    assert contents[0] == FENCE_OPEN and contents[-1] == FENCE_CLOSE
    body = contents[1:-1]
    assert all(body), "no empty chunks"
    assert "".join(body) == code


def closing_index(pieces: list[str], end: int) -> int:
    """Index of the piece holding ``text[end - 1]`` (the closing quote)."""
    offset = 0
    for index, piece in enumerate(pieces):
        offset += len(piece)
        if offset >= end:
            return index
    raise AssertionError("closing quote not in pieces")  # pragma: no cover


# ----------------------------------------------------------------------------- json: properties


@SETTINGS
@given(arguments(), st.randoms(use_true_random=False), st.sampled_from([1, 3, 8, 64, 4096]))
def test_random_splits_decode_exactly(args, rnd, max_piece):
    text, code, start, end = args
    assert orjson.loads(text)["code"] == code  # the generator makes valid arguments
    pieces = splits(text, rnd, max_piece)
    extractor = CodeExtractor("json")
    fed = 0
    yielded = ""
    for piece in pieces:
        yielded += extractor.feed(piece)
        fed += len(piece)
        # Neither late nor early, at every fragment boundary.
        assert yielded == certain_prefix(text, start, end, code, fed)
        assert extractor.complete == (fed >= end)
        assert extractor.code == yielded
    assert yielded == code
    assert extractor.finish() == code
    check_stream(pieces, code, closing_index(pieces, end))


@SETTINGS
@given(arguments())
def test_every_boundary_char_by_char(args):
    """One character per fragment: after every prefix, exactly the certain text is out."""
    text, code, start, end = args
    extractor = CodeExtractor("json")
    yielded = ""
    for k in range(1, len(text) + 1):
        piece = extractor.feed(text[k - 1])
        yielded += piece
        assert yielded == certain_prefix(text, start, end, code, k), (text, k)
        orjson.dumps(piece)  # always serializable: never half a surrogate pair
    assert extractor.finish() == code
    check_stream(list(text), code, end - 1)


@SETTINGS
@given(code_text, st.booleans(), st.randoms(use_true_random=False))
def test_simple_arguments_random_splits(code, ensure_ascii, rnd):
    text = json.dumps({"code": code}, ensure_ascii=ensure_ascii)
    yielded, finished = run_pieces(splits(text, rnd, 5))
    assert yielded == finished == code


@SETTINGS
@given(code_text, st.randoms(use_true_random=False))
def test_raw_is_passthrough(code, rnd):
    pieces = splits(code, rnd, 7)
    extractor = CodeExtractor("raw")
    for piece in pieces:
        assert extractor.feed(piece) == piece
        assert not extractor.complete
    assert extractor.code == code
    assert extractor.finish() == code
    assert extractor.complete
    if code:
        check_stream(pieces, code, None)


FIXED_SAMPLES = [
    "",
    "print('hi')",
    'print("héllo, \\"world\\"")\r\n\tx = {"a": [1, "}"]}\n',
    "emoji 😀 and 𝄞 and 東京\u2028end",
    '\\\\\\"""\\u0041\x00\x1f\x7f/',
    '}"}]{\n' * 3,
]


@pytest.mark.parametrize("code", FIXED_SAMPLES)
@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("extra", [False, True])
def test_fixed_samples_split_in_two_at_every_boundary(code, ensure_ascii, extra):
    literal = json.dumps(code, ensure_ascii=ensure_ascii)
    if extra:
        prefix = (
            '{ "meta" : {"code": "not me", "x": [1, {"code": 2}]}, "s": "a\\"}\\\\",\n"code":\t'
        )
        suffix = ', "n": -1.5e3, "t": true, "f": false, "z": null, "l": [[], {}] }\n'
    else:
        prefix, suffix = '{"code": ', "}"
    text = prefix + literal + suffix
    start, end = len(prefix), len(prefix) + len(literal)
    assert orjson.loads(text)["code"] == code
    for k in range(len(text) + 1):
        extractor = CodeExtractor("json")
        first = extractor.feed(text[:k])
        assert first == certain_prefix(text, start, end, code, k), k
        assert first + extractor.feed(text[k:]) == code
        assert extractor.finish() == code
        pieces = [p for p in (text[:k], text[k:]) if p]
        check_stream(pieces, code, closing_index(pieces, end))


def test_surrogate_pair_split_between_halves():
    extractor = CodeExtractor("json")
    assert extractor.feed('{"code": "a\\uD83D') == "a"
    assert extractor.feed("\\u") == ""
    assert extractor.feed("DE0") == ""
    assert extractor.feed("0b") == "😀b"
    assert extractor.feed('"}') == ""
    assert extractor.complete
    assert extractor.finish() == "a😀b"


def test_escape_split_after_backslash():
    extractor = CodeExtractor("json")
    assert extractor.feed('{"code": "x\\') == "x"
    assert extractor.feed("n") == "\n"
    assert extractor.feed("\\u00") == ""
    assert extractor.feed("e9\\/") == "é/"
    assert extractor.feed('"') == ""
    assert extractor.complete


def test_escaped_code_key_counts_and_nested_code_key_does_not():
    assert run_pieces(['{"\\u0063ode": "1+1"}']) == ("1+1", "1+1")
    text = '{"outer": {"code": "nope"}, "list": [{"code": "no"}], "code": "yes"}'
    for k in range(len(text) + 1):
        assert run_pieces([text[:k], text[k:]]) == ("yes", "yes")


def test_key_split_inside_and_similar_keys():
    text = '{"codex": "no", "cod": "no", "xcode": "no", "code": "yes", "Code": "no"}'
    for k in range(len(text) + 1):
        assert run_pieces([text[:k], text[k:]]) == ("yes", "yes")


def test_non_string_code_then_string_code_follows_json_last_wins():
    # JSON keeps the last duplicate: the extractor streams the first *string* "code" value.
    assert run_pieces(['{"code": 1, "code": "x"}']) == ("x", "x")


def test_large_payload_matches():
    code = ('print("héllo\\t😀")\n' * 5000) + "x = {'a': \"}\"}\r\n"
    text = json.dumps({"code": code, "other": [code[:100]]}, ensure_ascii=True)
    rnd = random.Random(7)
    for max_piece in (16, 4096, 100_000):
        yielded, finished = run_pieces(splits(text, rnd, max_piece))
        assert yielded == finished == code


# ----------------------------------------------------------------------------- stream


def test_empty_code_gives_opener_and_closer_on_closing_quote():
    stream = HotCodeStream("json")
    assert stream.feed('{"code": ') == []
    assert [c["content"] for c in stream.feed('""')] == [FENCE_OPEN, FENCE_CLOSE]
    assert stream.feed("}") == []
    assert stream.close() == ("", [])


def test_opener_comes_with_first_code_text_only():
    stream = HotCodeStream("json")
    assert stream.feed('{"code"') == []
    assert stream.feed(': "') == []
    assert [c["content"] for c in stream.feed("im")] == [FENCE_OPEN, "im"]
    assert [c["content"] for c in stream.feed("port os")] == ["port os"]
    assert [c["content"] for c in stream.feed('\\n"')] == ["\n", FENCE_CLOSE]
    assert stream.feed(', "x": 1}') == []
    assert stream.close() == ("import os\n", [])


def test_close_sends_what_is_owed():
    stream = HotCodeStream("raw")
    assert [c["content"] for c in stream.feed("1+")] == [FENCE_OPEN, "1+"]
    assert stream.feed("") == []
    assert [c["content"] for c in stream.feed("1")] == ["1"]
    code, chunks = stream.close()
    assert code == "1+1" and [c["content"] for c in chunks] == [FENCE_CLOSE]

    empty = HotCodeStream("raw")
    code, chunks = empty.close()
    assert code == "" and [c["content"] for c in chunks] == [FENCE_OPEN, FENCE_CLOSE]

    unfinished = HotCodeStream("json")
    unfinished.feed('{"code": "x')
    with pytest.raises(ProtocolError):
        unfinished.close()
    assert [c["content"] for c in unfinished.abort()] == [FENCE_CLOSE]
    assert unfinished.abort() == []


def test_abort_before_anything_sends_nothing():
    stream = HotCodeStream("json")
    stream.feed('{"x": ')
    assert stream.abort() == []


# ----------------------------------------------------------------------------- invalid arguments

INVALID = [
    "",
    "   ",
    "not json",
    '["code"]',
    '"code"',
    "null",
    "{}",
    '{"x": 1}',
    '{"meta": {"code": "nested only"}}',
    '{"code": 1}',
    '{"code": null}',
    '{"code": ["x"]}',
    '{"code": {"code": "x"}}',
    '{"code": "x"',
    '{"code": "x"} trailing',
    '{"code": "x"}}',
    '{"code": "x",}',
    '{"code" "x"}',
    '{code: "x"}',
    '{"code": "x", "code": "y"}',
    '{"code": "a\\qb"}',
    '{"code": "\\u12G4"}',
    '{"code": "\\ud83d"}',
    '{"code": "\\ud83dx"}',
    '{"code": "\\ud83d\\n"}',
    '{"code": "\\ud83d\\u0041"}',
    '{"code": "\\ude00"}',
    '{"code": "tab\there"}',
    '{"code": "nl\nhere"}',
    '{"code": "lone \ud83d char"}',
    '{"x": "\ud83d", "code": "y"}',
    '{"x": ]}',
    '\ufeff{"code": "x"}',
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_arguments_raise_protocol_error(text):
    for k in range(len(text) + 1):
        extractor = CodeExtractor("json")
        with pytest.raises(ProtocolError) as info:
            for piece in (text[:k], text[k:]):
                orjson.dumps(extractor.feed(piece))  # what was yielded stays serializable
            extractor.finish()
        assert info.value.code == "bad_arguments"
        assert str(info.value)
        # The error sticks: later calls raise it again, never crash or succeed.
        with pytest.raises(ProtocolError):
            extractor.finish()


def test_error_messages_are_clear():
    def message(text: str) -> str:
        extractor = CodeExtractor("json")
        with pytest.raises(ProtocolError) as info:
            extractor.feed(text)
            extractor.finish()
        return str(info.value)

    assert "not valid JSON" in message('{"code": "x"')
    assert "no 'code' key" in message('{"x": 1}')
    assert "must be a string" in message('{"code": 3}')
    assert "JSON object" in message("[1]")
    assert "more than once" in message('{"code": "a", "code": "b"}')
    assert "surrogate" in message('{"code": "\\ud83d!"}')


def test_invalid_start_is_rejected_early():
    with pytest.raises(ProtocolError):
        CodeExtractor("json").feed("  [")


def test_feed_after_finish_is_rejected():
    for fmt, text in (("json", '{"code": "1"}'), ("raw", "1")):
        extractor = CodeExtractor(fmt)  # type: ignore[arg-type]
        extractor.feed(text)
        assert extractor.finish() == "1"
        assert extractor.finish() == "1"
        with pytest.raises(ProtocolError):
            extractor.feed("x")


def test_unknown_format():
    with pytest.raises(ProtocolError):
        CodeExtractor("yaml")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- fuzz vs orjson


def top_level_code_keys(text: str) -> int:
    counts = []

    def hook(pairs):
        counts.append(sum(1 for key, _ in pairs if key == "code"))
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return counts[-1]  # the top-level object is built last


def agrees_with_orjson(text: str, pieces: list[str]) -> None:
    """Success exactly when orjson finds a string "code" (given once); same value; no crash."""
    try:
        expected = orjson.loads(text)
        ok = (
            isinstance(expected, dict)
            and isinstance(expected.get("code"), str)
            and top_level_code_keys(text) == 1
        )
    except (orjson.JSONDecodeError, RecursionError):
        ok = False
    extractor = CodeExtractor("json")
    yielded = ""
    try:
        for piece in pieces:
            new = extractor.feed(piece)
            orjson.dumps(new)
            yielded += new
        code = extractor.finish()
    except ProtocolError as exc:
        assert exc.code == "bad_arguments"
        assert not ok, (text, exc)
        return
    assert ok, text
    assert code == yielded == expected["code"]


MUTATION_CHARS = '{}[]",:\\ u0aDdE\n\x01\ud83d'


@settings(max_examples=500, deadline=None)
@given(arguments(), st.randoms(use_true_random=False), st.integers(1, 3))
def test_mutated_arguments_agree_with_orjson(args, rnd, mutations):
    text = args[0]
    for _ in range(mutations):
        i = rnd.randrange(len(text) + 1)
        op = rnd.randrange(3)
        if op == 0 and i < len(text):
            text = text[:i] + text[i + 1 :]
        elif op == 1:
            text = text[:i] + rnd.choice(MUTATION_CHARS) + text[i:]
        elif i < len(text):
            text = text[:i] + rnd.choice(MUTATION_CHARS) + text[i + 1 :]
    agrees_with_orjson(text, splits(text, rnd, 6))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*MUTATION_CHARS, "code", '"code"', "1", "null"]), max_size=30).map(
        "".join
    )
)
def test_arbitrary_text_agrees_with_orjson(text):
    assume(text)
    agrees_with_orjson(text, [text])
    agrees_with_orjson(text, list(text))
