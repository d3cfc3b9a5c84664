"""The documentation cannot drift: the settings table is what scripts/settings_doc.py renders
from ``Settings``, every setting is on the page, and every relative link leads to a file.

``make docs`` (mkdocs build --strict, in CI) checks the site's navigation and anchors; these
checks need no mkdocs and run with the rest of the suite.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest

from gateway.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
README = ROOT / "README.md"

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def settings_doc():
    """scripts/settings_doc.py as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / "settings_doc.py"
    spec = importlib.util.spec_from_file_location("settings_doc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def between_markers(page: str, start: str, end: str) -> str:
    assert page.count(start) == 1 and page.count(end) == 1, "the settings markers, once each"
    return page.split(start, 1)[1].split(end, 1)[0]


def test_the_settings_table_is_what_the_script_renders():
    doc = settings_doc()
    page = doc.PAGE.read_text()
    assert between_markers(page, doc.START, doc.END) == "\n" + doc.render(), (
        "docs/configuration.md is out of date: run python scripts/settings_doc.py")


def test_every_setting_is_on_the_configuration_page():
    doc = settings_doc()
    table = between_markers(doc.PAGE.read_text(), doc.START, doc.END)
    rows = {match[1] for match in re.finditer(r"^\| `([a-z0-9_]+)`", table, re.MULTILINE)}
    assert {field.name for field in dataclasses.fields(Settings)} <= rows


def test_a_setting_without_a_description_stops_the_script(monkeypatch):
    doc = settings_doc()
    (heading, group), *rest = doc.GROUPS
    without_host = {name: text for name, text in group.items() if name != "host"}
    monkeypatch.setattr(doc, "GROUPS", [(heading, without_host), *rest])
    with pytest.raises(SystemExit, match="host"):
        doc.render()


def relative_links(page: Path) -> list[str]:
    """The link targets of a Markdown page that point into the repository, without anchors
    (code blocks and inline code are not links)."""
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text()))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # https:, mailto:, or an anchor in the same page
        targets.append(target.split("#", 1)[0])
    return targets


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda page: page.name)
def test_relative_links_point_to_files_that_exist(page):
    missing = [target for target in relative_links(page)
               if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_link_checker_sees_links():
    assert "docs/protocol.md" in relative_links(README)
    assert "configuration.md" in relative_links(DOCS / "index.md")


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda page: page.name)
def test_the_docs_speak_of_the_software_not_of_its_issues(page):
    """How the code got here belongs in CHANGELOG.md and the commit messages."""
    assert not re.findall(r"\bissue \d+", page.read_text(), re.IGNORECASE)


def test_the_readme_is_a_front_page():
    assert len(README.read_text().splitlines()) <= 150
