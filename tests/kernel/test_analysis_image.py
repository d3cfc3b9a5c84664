"""The data-analysis image end to end: analysis tasks as a model writes them, through the real
server in the sandbox; the files they make are opened here with their own libraries. Straight
answers for packages that are not there, and progress output at its last state.

Tasks share a few threads (one kernel each) so the suite stays lean on two cores.
"""

from __future__ import annotations

import base64
import io

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


def file_bytes(result, name: str) -> bytes:
    files = {f["filename"]: f for f in result.files}
    assert name in files, f"{name} not among {sorted(files)}: {result.output[-2000:]}"
    return base64.b64decode(files[name]["base64"])


async def run_ok(thread, code: str):
    result = await thread.run(code, timeout=120)
    assert result.state == "complete", result.output[-3000:]
    return result


async def test_statistics_and_learning_tasks(client, thread_id):
    from PIL import Image

    thread = client.thread(thread_id)
    seaborn = await run_ok(thread, """
import numpy as np, pandas as pd
import seaborn as sns
import matplotlib.pyplot as plt

rng = np.random.default_rng(0)
df = pd.DataFrame({"x": rng.normal(size=200), "group": rng.choice(["a", "b"], 200)})
df["y"] = 2 * df.x + rng.normal(scale=0.5, size=200)
sns.set_theme()
ax = sns.scatterplot(data=df, x="x", y="y", hue="group")
ax.set_title("y against x")
plt.savefig("scatter.png", dpi=80)
plt.show()
""")
    Image.open(io.BytesIO(file_bytes(seaborn, "scatter.png"))).verify()
    Image.open(io.BytesIO(file_bytes(seaborn, "plot_1.png"))).verify()

    sklearn = await run_ok(thread, """
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split
X_train, X_test, y_train, y_test = train_test_split(df[["x"]], df.y, random_state=0)
model = LinearRegression().fit(X_train, y_train)
print(f"R^2 = {model.score(X_test, y_test):.3f}, slope = {model.coef_[0]:.2f}")
""")
    r2 = float(sklearn.output.split("R^2 = ")[1].split(",")[0])
    assert 0.8 < r2 <= 1.0

    ols = await run_ok(thread, """
import statsmodels.api as sm
fit = sm.OLS(df.y, sm.add_constant(df.x)).fit()
print(fit.summary())
""")
    assert "OLS Regression Results" in ols.output and "R-squared" in ols.output

    scipy = await run_ok(thread, """
from scipy import optimize, stats
best = optimize.minimize(lambda v: (v[0] - 3) ** 2 + (v[1] + 1) ** 2, x0=[0, 0])
t = stats.ttest_ind(df.y[df.group == "a"], df.y[df.group == "b"])
print("minimum at", best.x.round(3), "p =", round(t.pvalue, 3))
""")
    assert "minimum at [ 3. -1.]" in scipy.output

    sympy = await run_ok(thread, """
import sympy as sp
x = sp.symbols("x")
roots = sp.solve(x**2 - 5*x + 6, x)
print(roots, sp.latex(sp.Integral(sp.exp(-x**2), (x, -sp.oo, sp.oo))))
""")
    assert "[2, 3]" in sympy.output and r"\int\limits_{-\infty}^{\infty} e^{- x^{2}}\, dx" \
        in sympy.output


async def test_document_and_graph_tasks(client, thread_id):
    import openpyxl
    import pdfplumber  # noqa: F401  (the image's reader; the test opens with pypdf too)
    from PIL import Image
    from pptx import Presentation
    from pypdf import PdfReader

    thread = client.thread(thread_id)
    plotly = await run_ok(thread, """
import plotly.express as px
fig = px.bar(x=["a", "b", "c"], y=[3, 1, 2], title="Counts")
fig.write_html("counts.html", include_plotlyjs=True)
""")
    html = file_bytes(plotly, "counts.html").decode()
    assert "Plotly.newPlot" in html and "Counts" in html

    graph = await run_ok(thread, """
import networkx as nx
import matplotlib.pyplot as plt
g = nx.karate_club_graph()
nx.draw(g, nx.spring_layout(g, seed=1), node_size=40)
plt.savefig("karate.png", dpi=60)
plt.close()
print(g.number_of_nodes(), g.number_of_edges())
""")
    assert graph.output.strip() == "34 78"
    Image.open(io.BytesIO(file_bytes(graph, "karate.png"))).verify()

    pdf = await run_ok(thread, """
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas
c = canvas.Canvas("report.pdf", pagesize=A4)
c.drawString(72, 800, "Quarterly report: revenue 1234")
c.showPage()
c.drawString(72, 800, "Page two")
c.save()
""")
    reader = PdfReader(io.BytesIO(file_bytes(pdf, "report.pdf")))
    assert len(reader.pages) == 2 and "revenue 1234" in reader.pages[0].extract_text()

    plumber = await run_ok(thread, """
import pdfplumber
with pdfplumber.open("report.pdf") as doc:
    print(len(doc.pages), doc.pages[0].extract_text())
""")
    assert "2 Quarterly report: revenue 1234" in plumber.output

    deck = await run_ok(thread, """
from pptx import Presentation
from pptx.util import Inches
prs = Presentation()
slide = prs.slides.add_slide(prs.slide_layouts[1])
slide.shapes.title.text = "Findings"
slide.placeholders[1].text = "Revenue grew 12%"
prs.slides.add_slide(prs.slide_layouts[6]).shapes.add_picture("karate.png", Inches(1), Inches(1))
prs.save("findings.pptx")
""")
    slides = Presentation(io.BytesIO(file_bytes(deck, "findings.pptx"))).slides
    assert len(slides) == 2 and slides[0].shapes.title.text == "Findings"

    workbook = await run_ok(thread, """
import xlsxwriter
wb = xlsxwriter.Workbook("sales.xlsx")
ws = wb.add_worksheet("Sales")
ws.write_row(0, 0, ["month", "sales"])
for i, (m, s) in enumerate([("Jan", 10), ("Feb", 14), ("Mar", 9)], start=1):
    ws.write_row(i, 0, [m, s])
chart = wb.add_chart({"type": "column"})
chart.add_series({"categories": "=Sales!$A$2:$A$4", "values": "=Sales!$B$2:$B$4"})
ws.insert_chart("D2", chart)
wb.close()
""")
    sheet = openpyxl.load_workbook(io.BytesIO(file_bytes(workbook, "sales.xlsx")))["Sales"]
    assert [c.value for c in sheet["B"]] == ["sales", 10, 14, 9]

    soup = await run_ok(thread, """
from bs4 import BeautifulSoup
from tabulate import tabulate
html = "<table><tr><th>name</th><th>n</th></tr><tr><td>a</td><td>1</td></tr></table>"
soup = BeautifulSoup(html, "lxml")
rows = [[cell.text for cell in tr.find_all(["th", "td"])] for tr in soup.find_all("tr")]
print(tabulate(rows[1:], headers=rows[0]))
""")
    assert soup.output.split() == ["name", "n", "------", "---", "a", "1"]


async def test_missing_packages_get_a_straight_answer(client, thread_id):
    thread = client.thread(thread_id)
    missing = await thread.run("import cv2")
    assert missing.state == "error"
    line = ("`cv2` is not installed in this sandbox and cannot be installed: no network; "
            "installed: numpy, pandas, matplotlib, seaborn,")
    assert line in missing.output and line in missing.status["tool_output"]
    assert "scikit-learn" in missing.status["tool_output"]
    assert missing.status["error"]["ename"] == "ModuleNotFoundError"

    shell = await run_ok(thread, "!pip install opencv-python seaborn")
    assert ("`opencv-python` is not installed in this sandbox and cannot be installed: "
            "no network") in shell.output
    assert "`seaborn` is already installed (0.13.2): import it." in shell.output
    magic = await run_ok(thread, "%pip install -q polars")
    assert "`polars` is not installed in this sandbox" in magic.status["tool_output"]
    bare = await run_ok(thread, "pip install polars")  # automagic: a model's favourite slip
    assert "`polars` is not installed in this sandbox" in bare.output
    listing = await run_ok(thread, "!pip list | grep -i -E '^(seaborn|scikit-learn) '")
    assert listing.output.split() == ["scikit-learn", "1.9.1", "seaborn", "0.13.2"]
    show = await run_ok(thread, "%pip show statsmodels")
    assert "Name: statsmodels\nVersion: 0.15.0\n" in show.output
    submodule = await thread.run("import sklearn.no_such_module")
    assert submodule.state == "error" and "not installed" not in submodule.output


async def test_progress_output_collapses_to_its_last_state(client, thread_id):
    thread = client.thread(thread_id)
    rewrites = await run_ok(thread, """
import sys, time
for i in range(3):
    sys.stdout.write(f"\\rprogress {i}")
    sys.stdout.flush()
    time.sleep(0.3)  # one iopub message per update
""")
    assert rewrites.status["tool_output"] == "progress 2"
    assert rewrites.output == "progress 2"
    kinds = [e["chunk"]["type"] for e in rewrites.envelopes]
    assert "rewind" in kinds, "each update should reach clients as a rewrite of the line"

    ends = await run_ok(thread, """
for i in range(5):
    print(f"epoch {i}", end="\\r", flush=True)
    time.sleep(0.25)
print("trained")
""")
    assert ends.status["tool_output"] == "trained"

    bars = await run_ok(thread, """
from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm
from tqdm.notebook import tqdm as notebook_tqdm
total = 0
for i in tqdm(range(10_000), mininterval=0):
    total += i
for bar in (auto_tqdm, notebook_tqdm):
    for i in bar(range(2_000), desc="auto", mininterval=0):
        pass
print("sum", total)
""")
    lines = bars.status["tool_output"].splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("100%|") and "10000/10000" in lines[0]
    assert all(line.startswith("auto: 100%|") and "2000/2000" in line for line in lines[1:3])
    assert lines[3] == "sum 49995000"
    assert "IProgress" not in bars.output and "Warning" not in bars.output
