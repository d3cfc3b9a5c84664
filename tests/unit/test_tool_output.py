"""tool_output: what the model reads back, condensed, without a kernel."""

from gateway.wire.tool_output import condense, tool_output


def test_short_output_is_kept_whole():
    assert condense("a\nb\n", 100) == "a\nb\n"


def test_long_output_keeps_head_and_tail_with_a_marker():
    text = "".join(f"line {i}\n" for i in range(10_000))
    short = condense(text, 1000)
    assert short.startswith("line 0\nline 1\n")
    assert short.endswith("line 9999\n")
    assert "characters" in short and "cut ..." in short
    assert len(short) < 1100
    head, _, tail = short.partition("[...")
    # No half lines at the seams.
    assert head.rstrip("\n").split("\n")[-1].startswith("line ")
    assert tail.split("\n", 1)[1].startswith("line ")


def test_marker_counts_what_was_cut():
    text = "x" * 10_000
    short = condense(text, 1000)
    kept = short.replace("\n[... 9,000 characters (0 lines) cut ...]\n", "")
    assert kept == "x" * 1000


def test_traceback_tail_survives():
    text = "noise\n" * 5000 + "Traceback...\nZeroDivisionError: division by zero\n"
    result = tool_output(text, "error", [])
    assert result.endswith("ZeroDivisionError: division by zero")


def test_file_only_execution_names_its_files():
    assert tool_output("", "complete", ["report.docx", "plot_1.png"]) == (
        "Generated files: report.docx, plot_1.png")


def test_empty_and_killed():
    assert tool_output("", "complete", []) == "[no output]"
    killed = tool_output("partial\n", "killed", [], reason="memory limit of 512 MiB exceeded")
    assert killed == "partial\n[execution killed: memory limit of 512 MiB exceeded]"


def test_capped_output_says_so():
    assert "[output capped: 1,234 more" in tool_output("x", "complete", [], dropped_chars=1234)


def test_rewritten_lines_count_once_at_their_last_state():
    bar = "".join(f"\r{i:5d}/10000 |{'#' * (i // 1000):10s}|" for i in range(10_001))
    out = tool_output(f"fitting\n{bar}\nscore 0.93\n", "complete", [])
    assert out == "fitting\n10000/10000 |##########|\nscore 0.93"
