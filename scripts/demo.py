"""Replay a recorded model tool-call stream against a running gateway, live.

    .venv/bin/python -m scripts.demo [--url ws://127.0.0.1:8765/ws] [--token T] [--thread ID]

Uploads a generated sales CSV (200 orders) to a new thread, then replays scripts/demo_stream.json:
the argument fragments (``{"code": "..."}``, split every few characters, with the model's timing)
of three code_interpreter calls: a pandas summary, a matplotlib chart and a .docx report. Every
envelope is printed as it arrives; open the printed page URL (it watches the same thread) to see
the code typed out, the output, the chart and the report link appear live.

``--record`` regenerates demo_stream.json from the code below (deterministic).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import sys
import time
import urllib.parse
from datetime import date, timedelta
from pathlib import Path

from gateway.cli.display import print_envelope
from gateway.client import GatewayClient, is_final
from gateway.wire.envelopes import FENCE_CLOSE

ROOT = Path(__file__).resolve().parent.parent

STREAM_FILE = Path(__file__).with_name("demo_stream.json")
CSV_NAME = "sales.csv"


# -- the data --------------------------------------------------------------------------------

def sales_csv(rows: int = 200, seed: int = 7) -> bytes:
    """Deterministic orders of four products in four regions over the first half of 2024."""
    rng = random.Random(seed)
    products = {"Widget": 19.90, "Gadget": 34.50, "Gizmo": 12.75, "Doohickey": 58.00}
    regions = {"North": 1.0, "South": 0.8, "East": 1.25, "West": 0.95}
    channels = ["online", "retail", "partner"]
    start = date(2024, 1, 1)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["order_id", "date", "region", "product", "channel", "units", "unit_price",
                     "revenue"])
    for number in range(1, rows + 1):
        day = start + timedelta(days=rng.randrange(182))
        region = rng.choices(list(regions), weights=[3, 2, 4, 3])[0]
        product = rng.choice(list(products))
        units = max(1, round(rng.gauss(12, 5) * regions[region]))
        price = round(products[product] * rng.uniform(0.9, 1.05), 2)
        writer.writerow([f"SO-{10000 + number}", day.isoformat(), region, product,
                         rng.choice(channels), units, f"{price:.2f}", f"{units * price:.2f}"])
    return out.getvalue().encode()


# -- the recorded calls (what --record turns into fragments) ---------------------------------

CALLS = [
    ("summary", '''\
import pandas as pd

df = pd.read_csv("sales.csv", parse_dates=["date"])
print(f"{len(df)} orders, {df.date.min():%d %b} to {df.date.max():%d %b %Y}\\n")
print(df[["units", "unit_price", "revenue"]].describe().round(2))

by_region = (
    df.groupby("region")
    .agg(orders=("order_id", "count"), units=("units", "sum"), revenue=("revenue", "sum"))
    .sort_values("revenue", ascending=False)
)
print("\\nRevenue by region:")
print(by_region.round(0).to_string())
'''),
    ("chart", '''\
import matplotlib.pyplot as plt

monthly = df.pivot_table(index=df.date.dt.to_period("M"), columns="region",
                         values="revenue", aggfunc="sum")[by_region.index]
monthly.index = monthly.index.strftime("%b")
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), width_ratios=[1, 1.5])
colors = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b"]
by_region["revenue"].plot.bar(ax=left, color=colors, rot=0)
left.set_title("Revenue by region (EUR)")
left.set_xlabel("")
monthly.plot(ax=right, marker="o", color=colors)
right.set_title("Monthly revenue by region")
right.set_xlabel("")
right.legend(frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
for ax in (left, right):
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
fig.tight_layout()
plt.show()
'''),
    ("report", '''\
from docx import Document
from docx.shared import Inches

fig.savefig("revenue_by_region.png", dpi=150, bbox_inches="tight")
doc = Document()
doc.add_heading("Sales report \\u2014 H1 2024", 0)
doc.add_paragraph(
    f"{len(df)} orders across {df.region.nunique()} regions brought in "
    f"{df.revenue.sum():,.0f} EUR; {by_region.index[0]} led with "
    f"{by_region.revenue.iloc[0] / df.revenue.sum():.0%} of revenue."
)
doc.add_heading("Revenue by region", level=1)
table = doc.add_table(rows=1, cols=4)
table.style = "Light Grid Accent 1"
for cell, title in zip(table.rows[0].cells, ["Region", "Orders", "Units", "Revenue (EUR)"]):
    cell.text = title
for region, orders, units, revenue in by_region.itertuples():
    cells = table.add_row().cells
    cells[0].text = region
    cells[1].text = str(orders)
    cells[2].text = str(units)
    cells[3].text = f"{revenue:,.0f}"
doc.add_heading("Trend", level=1)
doc.add_picture("revenue_by_region.png", width=Inches(6.3))
doc.save("report.docx")
print("wrote report.docx:", len(by_region), "regions,", len(df), "orders")
'''),
]


def record(seed: int = 2024) -> dict:
    """Split each call's JSON arguments like a model's stream: 3-12 characters, 20-60 ms apart,
    with longer pauses at some line ends (escape sequences get split too, as models do)."""
    rng = random.Random(seed)
    calls = []
    for name, code in CALLS:
        arguments = json.dumps({"code": code})
        fragments, i = [], 0
        while i < len(arguments):
            piece = arguments[i:i + rng.randint(3, 12)]
            i += len(piece)
            delay = rng.randint(20, 60)
            if "\\n" in piece and rng.random() < 0.25:
                delay += rng.randint(80, 300)  # the model "thinks" between lines
            fragments.append({"delay_ms": delay, "delta": piece})
        calls.append({"name": name, "format": "json", "fragments": fragments})
    return {"model": "recorded tool-call stream (synthetic timing)", "tool": "code_interpreter",
            "calls": calls}


# -- replay ------------------------------------------------------------------------------------

def default_token() -> str:
    token = os.environ.get("GATEWAY_TOKEN")
    if token:
        return token
    path = ROOT / ".data" / "token"
    return path.read_text().strip() if path.is_file() else ""


def page_url(ws_url: str, token: str, thread_id: str) -> str:
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    query = urllib.parse.urlencode({"token": token, "thread": thread_id})
    return f"{scheme}://{parts.netloc}/?{query}"


async def replay_call(thread, call: dict, call_id: str, speed: float, as_json: bool,
                      files: list[dict]) -> dict:
    """Stream one call's fragments with their timing while printing what comes back."""
    status: dict = {}

    async def show() -> None:
        nonlocal status
        async for envelope in thread.stream(call_id):
            print_envelope(envelope, as_json)
            chunk = envelope["chunk"]
            if not as_json and chunk == {"type": "hot_code", "content": FENCE_CLOSE}:
                print(flush=True)  # the output starts on its own line
            if chunk["type"] == "code_interpreter_stream":
                files.append(chunk["content"])
            if is_final(envelope):
                status = chunk["content"] if chunk["type"] == "status" else {
                    "state": "protocol_error", **chunk["content"]}

    printer = asyncio.create_task(show())
    try:
        for fragment in call["fragments"]:
            if speed > 0:
                await asyncio.sleep(fragment["delay_ms"] / 1000 / speed)
            await thread.send_code(call_id, [fragment["delta"]], call.get("format", "json"))
        await thread.execute(call_id=call_id)
        await asyncio.wait_for(asyncio.shield(printer), 300)
    finally:
        printer.cancel()
    return status


async def main(args: argparse.Namespace) -> int:
    stream = json.loads(args.stream.read_text())
    thread_id = args.thread or f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"thread {thread_id}; watch it live at\n  {page_url(args.url, args.token, thread_id)}\n",
          flush=True)
    if args.wait:
        await asyncio.sleep(args.wait)
    failed = 0
    files: list[dict] = []
    async with await GatewayClient.connect(args.url, args.token) as client:
        thread = client.thread(thread_id)
        data = sales_csv()
        chunk = await thread.upload(CSV_NAME, data, call_id="upload-sales")
        if chunk["type"] != "file_uploaded":
            print(f"upload failed: {chunk['content']}", file=sys.stderr)
            return 1
        rows = data.count(b"\n") - 1
        print(f"uploaded {CSV_NAME} ({len(data)} bytes, {rows} rows) to "
              f"{chunk['content']['path']}\n", flush=True)
        for number, call in enumerate(stream["calls"], 1):
            call_id = f"call-{number}-{call['name']}"
            if args.thread:  # a thread may be reused: call ids must not repeat in it
                call_id += time.strftime("-%H%M%S")
            print(f"── {call_id} " + "─" * 50, flush=True)
            status = await replay_call(thread, call, call_id, args.speed, args.json, files)
            if status.get("state") != "complete":
                failed += 1
            print(flush=True)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            for file in files:
                data = await asyncio.to_thread(client.download, file["file_id"])
                target = args.out / Path(file["filename"]).name
                target.write_bytes(data)
                print(f"downloaded {target} ({len(data)} bytes)")
    print(f"{len(stream['calls']) - failed}/{len(stream['calls'])} calls complete; files: "
          + ", ".join(f["filename"] for f in files))
    return 1 if failed else 0


def write_stream(path: Path, recording: dict) -> None:
    """One fragment per line: a readable, diffable recording."""
    lines = ["{", f' "model": {json.dumps(recording["model"])},',
             f' "tool": {json.dumps(recording["tool"])},', ' "calls": [']
    for n, call in enumerate(recording["calls"]):
        lines.append(f'  {{"name": {json.dumps(call["name"])}, "format": '
                     f'{json.dumps(call["format"])}, "fragments": [')
        fragments = [f"   {json.dumps(f)}" for f in call["fragments"]]
        lines.append(",\n".join(fragments))
        lines.append("  ]}" + ("," if n < len(recording["calls"]) - 1 else ""))
    lines += [" ]", "}"]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("GATEWAY_URL", "ws://127.0.0.1:8765/ws"))
    parser.add_argument("--token", default=default_token(),
                        help="default: $GATEWAY_TOKEN, else .data/token")
    parser.add_argument("--thread", help="thread id (default demo-<time>)")
    parser.add_argument("--stream", type=Path, default=STREAM_FILE)
    parser.add_argument("--speed", type=float, default=1.0,
                        help="replay speed factor; 0 sends all fragments at once")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds to wait before streaming (time to open the page)")
    parser.add_argument("--json", action="store_true", help="print raw envelopes as JSON lines")
    parser.add_argument("--out", type=Path, help="download the files the calls made here")
    parser.add_argument("--record", action="store_true",
                        help=f"regenerate {STREAM_FILE.name} from the code in this script")
    args = parser.parse_args()
    if args.record:
        write_stream(args.stream, record())
        print(f"wrote {args.stream}")
        sys.exit(0)
    if not args.token:
        parser.error("no token: --token, $GATEWAY_TOKEN or .data/token")
    sys.exit(asyncio.run(main(args)))
