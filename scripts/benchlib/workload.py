"""What the benchmarks run: the cells, and execute/close over a bare websocket."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson

from gateway.client import GatewayClient

ANALYSIS_CELL = """\
import numpy as np, pandas as pd, matplotlib.pyplot as plt
_rng = np.random.default_rng(0)
df = pd.DataFrame({"g": _rng.integers(0, 100, 1_000_000), "v": _rng.random(1_000_000)})
s = df.groupby("g")["v"].agg(["mean", "sum", "count"])
fig, ax = plt.subplots(figsize=(6, 3))
s["mean"].plot(ax=ax)
plt.show()
print(len(s))
"""
STDOUT_LINES, STDOUT_WIDTH = 200_000, 50
STDOUT_CELL = f"for i in range({STDOUT_LINES}): print('x'*{STDOUT_WIDTH})"
STDOUT_BYTES = STDOUT_LINES * (STDOUT_WIDTH + 1)  # 10.2 MB


async def raw_roundtrip(ws, thread_id: str) -> float:
    """One execute over a bare websockets connection; seconds until the final status."""
    call = uuid.uuid4().hex[:12]
    began = time.perf_counter()
    await ws.send(orjson.dumps({"type": "execute", "thread_id": thread_id, "call_id": call,
                                "code": "1+1"}).decode())
    while True:
        envelope = orjson.loads(await ws.recv())
        chunk = envelope["chunk"]
        if envelope.get("call_id") == call and (
                chunk["type"] == "error" or (chunk["type"] == "status" and chunk["content"].get(
                    "state") in ("complete", "error", "timeout", "interrupted", "killed"))):
            return time.perf_counter() - began


async def receive_n(client: GatewayClient, thread_id: str, call_id: str, count: int,
                    arrivals: list[float]) -> None:
    for _ in range(count):
        await client.next_envelope(thread_id, call_id, timeout=30)
        arrivals.append(time.perf_counter())


async def raw_close(ws, thread_id: str) -> None:
    await ws.send(orjson.dumps({"type": "close", "thread_id": thread_id}).decode())
    while True:
        envelope = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
        if envelope.get("thread_id") == thread_id and envelope["chunk"]["type"] == "status" \
                and envelope["chunk"]["content"].get("state") == "closed":
            return




# A short data-analysis notebook, the kind of cells models write: load, clean, group, plot,
# fit. Small data (a few MB in the namespace): the gateway snapshots such a namespace after
# every cell that changes it, so the snapshots are part of what this measures.
NOTEBOOK_SETUP = """\
import numpy as np, pandas as pd, matplotlib.pyplot as plt
import seaborn as sns
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split
import statsmodels.formula.api as smf
"""
NOTEBOOK_CELLS = (
    """\
rng = np.random.default_rng(0)
n = 20_000
days = pd.to_timedelta(rng.integers(0, 365, n), "D")
df = pd.DataFrame({"region": rng.choice(["north", "south", "east", "west"], n),
                   "price": rng.gamma(2.0, 10.0, n).round(2),
                   "qty": rng.integers(1, 20, n),
                   "day": pd.Timestamp("2024-01-01") + days})
df.head()
""",
    "df.describe()",
    """\
df["revenue"] = df["price"] * df["qty"]
by_region = df.groupby("region")["revenue"].agg(["sum", "mean", "count"])
by_region
""",
    """\
monthly = df.set_index("day").resample("MS")["revenue"].sum()
fig, ax = plt.subplots(figsize=(6, 3))
monthly.plot(ax=ax)
ax.set_title("Monthly revenue")
plt.show()
""",
    """\
sns.histplot(df, x="price", hue="region", bins=40)
plt.show()
""",
    """\
X_train, X_test, y_train, y_test = train_test_split(df[["price", "qty"]], df["revenue"],
                                                    random_state=0)
model = LinearRegression().fit(X_train, y_train)
print(f"R^2 = {model.score(X_test, y_test):.3f}")
""",
    """\
forest = RandomForestRegressor(n_estimators=30, max_depth=8, random_state=0).fit(X_train, y_train)
print(f"forest R^2 = {forest.score(X_test, y_test):.3f}")
""",
    """\
sns.heatmap(df.assign(month=df["day"].dt.month).pivot_table(index="month", columns="region",
                                                           values="revenue", aggfunc="mean"),
            annot=True, fmt=".0f")
plt.show()
""",
    """\
fit = smf.ols("revenue ~ price + qty + C(region)", data=df).fit()
print(fit.params.round(3))
""",
    """\
pivot = df.pivot_table(index=df["day"].dt.month, columns="region", values="qty", aggfunc="sum")
pivot.tail()
""",
)
