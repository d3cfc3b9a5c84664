"""OutputTranslator: iopub messages as jupyter_client returns them -> chunks. No kernel needed."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire import envelopes
from gateway.wire.translate import TRACEBACK_LIMIT, Display, DisplayedFile, OutputTranslator, clean
from support.messages import IPYTHON_TRACEBACK, SVG, msg, stream, texts, tiny_png


def display(data: dict, msg_type: str = "display_data") -> dict:
    return msg(msg_type, data=data, metadata={}, transient={})


def files(items: list) -> list[DisplayedFile]:
    return [item for item in items if isinstance(item, DisplayedFile)]


def displays(items: list) -> list[Display]:
    return [item for item in items if isinstance(item, Display)]


# IPython 9 (bright colours, no "0;" prefix).
IPYTHON9_TRACEBACK = [
    "\x1b[31m---------------------------------------------------------------------------\x1b[39m",
    "\x1b[31mZeroDivisionError\x1b[39m                         Traceback (most recent call last)",
    "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[2]\x1b[39m\x1b[32m, line 1\x1b[39m\n"
    "\x1b[32m----> \x1b[39m\x1b[32m1\x1b[39m \x1b[43mf\x1b[49m\x1b[43m(\x1b[49m"
    "\x1b[32;43m0\x1b[39;49m\x1b[43m)\x1b[49m\n",
    "\x1b[31mZeroDivisionError\x1b[39m: division by zero",
]


# -- text ------------------------------------------------------------------------------------
def test_stdout_and_stderr_become_output_chunks():
    t = OutputTranslator()
    assert t.translate(stream("hello\n")) == [envelopes.output("hello\n", "stdout")]
    assert t.translate(stream("oops\n", "stderr")) == [envelopes.output("oops\n", "stderr")]
    assert t.text == "hello\noops\n"


def test_stream_text_is_passed_on_without_added_newline():
    t = OutputTranslator()
    assert texts(t.translate(stream("no newline"))) == "no newline"
    assert t.translate(stream("")) == []


def test_execute_result_text_ends_with_newline_and_sets_count():
    t = OutputTranslator()
    out = t.translate(msg("execute_result", execution_count=7, data={"text/plain": "2"},
                          metadata={}))
    assert out[1:] == [envelopes.output("2\n", "result")]
    assert out[0] == Display("execute_result", {"text/plain": "2"})
    assert t.execution_count == 7
    assert texts(t.translate(display({"text/plain": "already\n"}))) == "already\n"


def test_execute_input_records_count_without_output():
    t = OutputTranslator()
    assert t.translate(msg("execute_input", code="1+1", execution_count=3)) == []
    assert t.execution_count == 3


def test_display_text_plain_and_html_only():
    t = OutputTranslator()
    assert texts(t.translate(display({"text/plain": "   a\n0  1", "text/html": "<table>"}))) \
        == "   a\n0  1\n"
    (only_html,) = t.translate(display({"text/html": "<b>x</b>"}))
    assert only_html.chunk() == envelopes.display(
        {"source": "display_data", "display_id": None, "data": {"text/html": "<b>x</b>"}})


def test_unknown_and_bookkeeping_messages_are_ignored():
    t = OutputTranslator()
    for m in [msg("status", execution_state="busy"), msg("clear_output", wait=True),
              msg("comm_open", comm_id="c", target_name="x", data={}),
              msg("comm_msg", comm_id="c", data={}), msg("comm_close", comm_id="c", data={}),
              msg("something_new", foo=1), {"header": {}, "content": {}}]:
        assert t.translate(m) == []
    assert t.execution_count is None and t.error is None and t.finish() == []


# -- images ----------------------------------------------------------------------------------
def test_png_display_becomes_numbered_files_with_valid_bytes():
    png = tiny_png()
    t = OutputTranslator()
    first = t.translate(display({"image/png": base64.b64encode(png).decode() + "\n",
                                 "text/plain": "<Figure size 640x480 with 1 Axes>"}))
    second = t.translate(display({"image/png": base64.b64encode(tiny_png(2, 2)).decode()}))
    assert files(first) == [DisplayedFile("plot_1.png", "image/png", png)]
    assert displays(first)[0].file == files(first)[0]
    assert second[0].filename == "plot_2.png"
    assert second[0].data.startswith(b"\x89PNG\r\n\x1a\n")
    assert t.next_plot_number == 3
    assert t.text == ""  # the <Figure ...> repr is not output


def test_plot_numbering_continues_from_first_plot_number():
    t = OutputTranslator(first_plot_number=5)
    out = t.translate(display({"image/svg+xml": SVG}, "update_display_data"))
    assert files(out) == [DisplayedFile("plot_5.svg", "image/svg+xml", SVG.encode())]
    assert t.next_plot_number == 6


def test_execute_result_png_is_a_file():
    png = tiny_png()
    t = OutputTranslator()
    out = t.translate(msg("execute_result", execution_count=1,
                          data={"image/png": base64.b64encode(png).decode(), "text/plain": "<I>"},
                          metadata={}))
    assert files(out) == [DisplayedFile("plot_1.png", "image/png", png)]
    assert texts(out) == ""


def test_png_preferred_over_svg():
    t = OutputTranslator()
    item, _ = t.translate(display({"image/svg+xml": SVG,
                                   "image/png": base64.b64encode(tiny_png()).decode()}))
    assert item.mime_type == "image/png"


# -- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("traceback", [IPYTHON_TRACEBACK, IPYTHON9_TRACEBACK],
                         ids=["ipython8", "ipython9"])
def test_ipython_traceback_is_cleaned_and_error_recorded(traceback):
    t = OutputTranslator()
    out = t.translate(msg("error", ename="ZeroDivisionError", evalue="division by zero",
                          traceback=traceback))
    text = texts(out)
    assert "\x1b" not in text and "[0;31m" not in text
    assert text.endswith("ZeroDivisionError: division by zero\n")
    assert "----> 1 f(0)\n" in text
    assert t.error == ("ZeroDivisionError", "division by zero")


def test_error_without_traceback_still_says_what_happened():
    t = OutputTranslator()
    assert texts(t.translate(msg("error", ename="KeyboardInterrupt", evalue="",
                                 traceback=[]))) == "KeyboardInterrupt: \n"
    assert t.error == ("KeyboardInterrupt", "")


def test_huge_traceback_keeps_head_and_tail():
    frames = [f"frame {i}\n" for i in range(10_000)]
    t = OutputTranslator()
    text = texts(t.translate(msg("error", ename="RecursionError", evalue="too deep",
                                 traceback=[*frames, "RecursionError: too deep"])))
    assert len(text) < TRACEBACK_LIMIT + 100
    assert text.startswith("frame 0\n") and text.endswith("RecursionError: too deep\n")
    assert "characters cut" in text


# -- cleaning --------------------------------------------------------------------------------
def test_carriage_return_progress_collapses():
    assert clean("10%\r20%\r30%\n") == "30%\n"
    assert clean("a\r") == "a"
    assert clean("line1\r\nline2\r\n") == "line1\nline2\n"
    assert clean("\r 50%|#####     |\r100%|##########|\ndone\n") == "100%|##########|\ndone\n"
    assert clean("x\r\r\ny") == "x\ny"
    assert clean("\r") == ""


def test_progress_is_collapsed_per_message():
    t = OutputTranslator()
    assert texts(t.translate(stream("\r 10%", "stderr"))) == " 10%"
    assert texts(t.translate(stream("\r 20%\r 30%", "stderr"))) == " 30%"


def test_a_rewrite_in_a_later_message_rewinds_the_open_line():
    # The loop: sys.stdout.write(f"\rprogress {i}"), one iopub message per update.
    t = OutputTranslator()
    first, second, third = (t.translate(stream(f"\rprogress {i}")) for i in range(3))
    assert first == [envelopes.output("progress 0", "stdout")]
    assert second == [envelopes.rewind(10), envelopes.output("progress 1", "stdout")]
    assert third == [envelopes.rewind(10), envelopes.output("progress 2", "stdout")]
    assert t.text == "progress 2"


def test_print_end_carriage_return_rewrites_on_the_next_message():
    t = OutputTranslator()
    chunks = [c for i in range(3) for c in t.translate(stream(f"step {i}\r"))]
    out = [envelopes.output(f"step {i}", "stdout") for i in range(3)]
    assert chunks == [out[0], envelopes.rewind(6), out[1], envelopes.rewind(6), out[2]]
    assert t.translate(stream("done\n")) == [envelopes.rewind(6),
                                             envelopes.output("done\n", "stdout")]
    assert t.text == "done\n"


def test_a_bare_return_then_a_newline_keeps_the_line():
    t = OutputTranslator()
    t.translate(stream("kept\r"))
    assert t.translate(stream("\nnext\n")) == [envelopes.output("\nnext\n", "stdout")]
    assert t.text == "kept\nnext\n"


def test_a_rewrite_replaces_only_the_open_line_across_pieces():
    t = OutputTranslator()
    t.translate(stream("header\nabc"))
    t.translate(stream("def"))
    assert t.translate(stream("\rxyz\nend\n")) == [envelopes.rewind(6),
                                                    envelopes.output("xyz\nend\n", "stdout")]
    assert t.text == "header\nxyz\nend\n"


def test_text_before_a_return_is_appended_not_a_rewrite():
    t = OutputTranslator()
    t.translate(stream("a"))
    assert t.translate(stream("b\r")) == [envelopes.output("b", "stdout")]
    assert t.text == "ab"


def test_a_tqdm_bar_over_many_messages_leaves_one_line():
    t = OutputTranslator()
    t.translate(stream("training\n"))
    for step in range(0, 10_001, 100):
        t.translate(stream(f"\r{step * 100 // 10_000:3d}%|{'#' * (step // 1000):10s}| "
                           f"{step}/10000", "stderr"))
    t.translate(stream("\n", "stderr"))
    assert t.text == "training\n100%|##########| 10000/10000\n"


def test_one_stream_never_continues_the_line_the_other_left_open():
    t = OutputTranslator()
    t.translate(stream("\r 50%|#####     |", "stderr"))
    t.translate(stream("\r100%|##########|", "stderr"))
    assert t.translate(stream("sum 42\n")) == [envelopes.output("\nsum 42\n", "stdout")]
    assert t.translate(stream("\rlate bar", "stderr")) == [envelopes.output("late bar", "stderr")]
    t.translate(stream("epoch 1: "))
    assert t.translate(stream("\r 10%", "stderr")) == [envelopes.output("\n 10%", "stderr")]
    assert t.text == "100%|##########|\nsum 42\nlate bar\nepoch 1: \n 10%"


def test_a_rewrite_past_the_cap_keeps_the_last_line_sent():
    t = OutputTranslator(max_output_chars=11)
    t.translate(stream("\r 10%"))
    assert texts(t.translate(stream("\r 20%"))) == " 20%"
    assert t.translate(stream("\r 30%")) == [envelopes.rewind(4), envelopes.output(" 30", "stdout")]
    assert t.translate(stream("\r 40%")) == []
    assert t.text == " 30" and t.dropped_chars == 5


def test_ansi_sequences_are_stripped():
    assert clean("\x1b[31mred\x1b[0m \x1b[1;38;5;200mbold\x1b[m") == "red bold"
    assert clean("\x1b[?25lhidden cursor\x1b[?25h") == "hidden cursor"
    assert clean("\x1b]0;title\x07text") == "text"
    assert clean("\x1b]8;;https://x.org\x1b\\link\x1b]8;;\x1b\\") == "link"
    assert clean("\x1b7saved\x1b8\x1b(B\x1bc") == "saved"
    assert clean("\x1b[2K\r 42%") == " 42%"
    assert clean("cut at the end \x1b[3") == "cut at the end "
    assert clean("bell\x07 back\x08space\x00 tab\tok\x7f\x9b1m") == "bell backspace tab\tok"


# -- cap -------------------------------------------------------------------------------------
def test_cap_exact_boundary_drops_nothing():
    t = OutputTranslator(max_output_chars=10)
    assert texts(t.translate(stream("12345"))) + texts(t.translate(stream("67890"))) \
        == "1234567890"
    assert t.dropped_chars == 0 and t.finish() == []
    assert t.translate(stream("x")) == []
    assert t.dropped_chars == 1 and t.dropped_lines == 1


def test_cap_cuts_the_crossing_chunk_and_counts_the_rest():
    t = OutputTranslator(max_output_chars=10)
    assert texts(t.translate(stream("abcdef\n"))) == "abcdef\n"
    assert texts(t.translate(stream("ghijkl\nmn\n"))) == "ghi"
    assert t.translate(stream("o\np")) == []
    assert t.dropped_chars == len("jkl\nmn\n") + len("o\np")
    assert t.dropped_lines == 4  # "jkl", "mn", "o", "p"
    assert t.finish() == [envelopes.output(
        "\n[output truncated: 10 characters (4 lines) dropped, limit 10]\n", "note")]
    assert t.text == "abcdef\nghi"


def test_truncation_note_formats_large_numbers():
    t = OutputTranslator()
    t.translate(stream("x" * 1_000_000))
    t.translate(stream("y\n" * 6_172 + "z"))
    assert t.finish() == [envelopes.output(
        "\n[output truncated: 12,345 characters (6,173 lines) dropped, limit 1,000,000]\n",
        "note")]


def test_rich_text_counts_against_the_cap_images_do_not():
    t = OutputTranslator(max_output_chars=4)
    assert texts(t.translate(msg("execute_result", execution_count=1,
                                 data={"text/plain": "'abcdef'"}, metadata={}))) == "'abc"
    png = base64.b64encode(tiny_png()).decode()
    assert isinstance(t.translate(display({"image/png": png}))[0], DisplayedFile)
    assert t.dropped_chars == len("def'\n")


def test_error_after_cap_is_still_emitted():
    t = OutputTranslator(max_output_chars=5)
    t.translate(stream("0123456789"))
    out = t.translate(msg("error", ename="ValueError", evalue="bad",
                          traceback=["\x1b[0;31mValueError\x1b[0m: bad"]))
    assert out == [envelopes.output("ValueError: bad\n", "traceback")]
    assert t.error == ("ValueError", "bad")
    assert t.dropped_chars == 5 and len(t.finish()) == 1


# -- properties ------------------------------------------------------------------------------
NASTY = st.text(alphabet=st.sampled_from(
    list("ab1;?[]()\\PX^_ \t\n\r\x1b\x07\x08\x00\x0c\x7f\x9b\x9c\x90\u00e9\U0001f600")
    + [chr(c) for c in range(0x20)]), max_size=80)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@settings(max_examples=400, deadline=None)
@given(NASTY)
def test_clean_never_leaves_escapes_or_controls(text):
    cleaned = clean(text)
    assert not CONTROL.search(cleaned)
    assert clean(cleaned) == cleaned


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["stream", "result", "error"]), NASTY), max_size=12),
       st.integers(min_value=0, max_value=120))
def test_emitted_text_respects_the_cap(messages, cap):
    t = OutputTranslator(max_output_chars=cap)
    capped = tracebacks = 0
    screen = ""  # what a client shows after applying every chunk
    for kind, text in messages:
        if kind == "stream":
            out = t.translate(stream(text))
        elif kind == "result":
            out = t.translate(msg("execute_result", execution_count=1, data={"text/plain": text},
                                  metadata={}))
        else:
            out = t.translate(msg("error", ename="E", evalue="v", traceback=[text]))
        for chunk in out:
            if isinstance(chunk, Display):
                assert kind == "result"
                continue
            if chunk["type"] == "rewind":  # only ever the open line, and only of stream text
                assert kind == "stream" and chunk is out[0] and len(out) == 2
                chars = chunk["content"]["chars"]
                assert 0 < chars <= len(screen) - (screen.rfind("\n") + 1)
                screen = screen[:-chars]
                continue
            assert set(chunk) == {"type", "content", "stream"}
            assert chunk["type"] == "hot_code_output"
            assert chunk["stream"] == {"stream": "stdout", "result": "result",
                                       "error": "traceback"}[kind]
            assert chunk["content"] and not CONTROL.search(chunk["content"])
            assert "\x1b" not in chunk["content"]
            screen += chunk["content"]
        if kind == "error":
            tracebacks += len(texts(out))
        else:
            capped += len(texts(out))
    # Tracebacks count against the cap too; past it, one traceback's worth still goes out.
    assert capped <= cap and t.emitted_chars <= cap
    assert t.text == screen  # the model reads what a client shows
    assert len(t.text) <= capped + tracebacks <= cap + TRACEBACK_LIMIT
    assert (t.dropped_chars > 0) == bool(t.finish())


def test_tracebacks_past_the_cap_are_bounded_too():
    t = OutputTranslator(max_output_chars=100)
    t.translate(stream("x" * 100))
    sent = [t.translate(msg("error", ename="E", evalue="v", traceback=["y" * 9_000]))
            for _ in range(10)]
    emitted = sum(len(c["content"]) for chunks in sent for c in chunks)
    assert sent[0], "the first traceback past the cap still goes out"
    assert emitted <= TRACEBACK_LIMIT
    assert t.dropped_chars >= 7 * 9_000


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab \r\n", max_size=40), st.data())
def test_splitting_output_into_messages_never_changes_the_screen(text, data):
    """Where ipykernel cuts a stream into messages must not matter: the model's text (and a
    client that applies rewinds) equals the whole text collapsed at once."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    t = OutputTranslator()
    for piece in pieces:
        t.translate(stream(piece))
    assert t.text == clean(text)
