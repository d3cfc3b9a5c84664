"""Throughput of the hot-code extractor (gateway.hotcode), in MB/s of JSON argument text.

A ~10 MB realistic payload (Python source with quotes, backslashes, tabs, newlines, non-ASCII and
emoji, serialized as ``{"code": "..."}`` like a function call's arguments) is fed in fragments of
1, 16 and 4096 characters, the way a model's tool-call stream would deliver it. Prints a table and
one JSON line (for CI dashboards).

    python -m scripts.bench_hotcode [--mb 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time

from gateway.wire.hotcode import CodeExtractor, HotCodeStream

SNIPPET = '''\
import pandas as pd
import matplotlib.pyplot as plt

def summarize(path: str) -> dict:
    """Load a CSV and describe it; paths like C:\\\\data\\\\sales.csv work too."""
    df = pd.read_csv(path, sep=";", encoding="utf-8")
    df["total"] = df["price"] * df["qty"]
    print(f"rows={len(df)}\\tcols={len(df.columns)}")
    print("café, naïve, 東京, 😀 — all fine")
    return {"mean": df["total"].mean(), "pattern": r"\\d+\\.\\d*", "braces": "{}[]\\""}

result = summarize("sales.csv")
plt.plot([1, 2, 3], [4, 5, 6])
plt.title('It\\'s a "plot"')
plt.show()
'''


def make_payload(target_mb: float, ensure_ascii: bool) -> tuple[str, str]:
    """Return (arguments JSON text, code) with the JSON text about ``target_mb`` MB long."""
    unit = len(json.dumps(SNIPPET, ensure_ascii=ensure_ascii))
    code = SNIPPET * max(1, int(target_mb * 1_000_000 / unit))
    args = json.dumps({"code": code}, ensure_ascii=ensure_ascii)
    return args, code


def run(args: str, code: str, size: int, stream: bool) -> float:
    """Feed ``args`` in ``size``-char fragments; return seconds (extractor or full chunk stream)."""
    fragments = [args[i : i + size] for i in range(0, len(args), size)]
    t0 = time.perf_counter()
    if stream:
        s = HotCodeStream("json")
        feed = s.feed
        for f in fragments:
            feed(f)
        got, _ = s.close()
    else:
        e = CodeExtractor("json")
        feed = e.feed
        for f in fragments:
            feed(f)
        got = e.finish()
    elapsed = time.perf_counter() - t0
    if got != code:
        raise SystemExit(f"decoding mismatch at fragment size {size}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=10.0, help="payload size in MB (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    opts = parser.parse_args()

    results = []
    print(f"{'payload':<14}{'what':<11}{'fragment':>9}{'MB/s':>10}{'seconds':>10}")
    for ensure_ascii in (False, True):
        args, code = make_payload(opts.mb, ensure_ascii)
        mb = len(args.encode()) / 1_000_000
        label = "ascii-escaped" if ensure_ascii else "utf-8"
        for stream in (False, True):
            what = "stream" if stream else "extractor"
            for size in (1, 16, 4096):
                best = min(run(args, code, size, stream) for _ in range(opts.repeat))
                rate = mb / best
                print(f"{label:<14}{what:<11}{size:>9}{rate:>10.1f}{best:>10.3f}")
                results.append(
                    {
                        "payload": label,
                        "what": what,
                        "fragment": size,
                        "mb": round(mb, 2),
                        "mb_per_s": round(rate, 1),
                        "seconds": round(best, 4),
                    }
                )
    print(json.dumps({"bench": "hotcode", "results": results}))


if __name__ == "__main__":
    main()
