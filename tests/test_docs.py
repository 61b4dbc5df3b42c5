"""The README is a front page and docs/ holds the rest: both stay true to the repository.

The README stays short and shows the commands a newcomer runs (CI runs the same test
command); every docs page opens with its purpose and contents; every relative link and
picture in them points at a file and heading that exist; the configuration page lists
every variable the settings read, and the README every run.sh mode.
"""

from __future__ import annotations

import configparser
import re
from functools import cache
from pathlib import Path

import pytest

from tests.test_containers import known_variables, run_sh_arms

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DOC_PAGES = tuple(sorted(DOCS.glob("*.md")))
PAGES = (README, *DOC_PAGES)
#: The pages the README links to (what used to be its sections, and more).
EXPECTED_PAGES = (
    "API",
    "CONFIGURATION",
    "SECURITY",
    "OPERATIONS",
    "CLUSTER",
    "CONSOLE",
    "ARCHITECTURE",
    "DEVELOPMENT",
    "BENCHMARKS",
)
MAX_README_LINES = 250
QUICK_START_LINES = 40

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1", re.S)
_LINK = re.compile(r"\]\((?P<target>[^()\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$", re.M)


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def prose(markdown: str) -> str:
    """The markdown without fenced blocks and code spans (links inside those are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", plain.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(_FENCE.sub("", text(path))):
        base = slug(match["text"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def relative_links(path: Path) -> list[str]:
    targets = [m["target"] for m in _LINK.finditer(prose(text(path)))]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_readme_is_a_front_page() -> None:
    lines = text(README).splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_quick_start_shows_real_output_early() -> None:
    head = "\n".join(text(README).splitlines()[:QUICK_START_LINES])
    assert "./run.sh demo" in head
    # The first curl and, on the next line, the answer it printed.
    assert re.search(r"^\$ curl localhost:8080/logs\n\{\"cameraId\":", head, re.M), head


@pytest.mark.parametrize(
    "command",
    [
        "./run.sh demo",
        "./run.sh test",
        "./run.sh cluster",
        "./run.sh dev",
        "./run.sh lint",
        "./run.sh bench",
        "./run.sh screenshots",
        "curl localhost:8080/logs",
    ],
)
def test_readme_shows_the_everyday_commands(command: str) -> None:
    assert command in text(README)


def test_ci_runs_the_readme_test_command() -> None:
    ci = text(ROOT / ".ci" / "run")
    assert re.search(r"^\./run\.sh test$", ci, re.M), ci
    assert "./run.sh test" in text(README)


def test_the_everyday_tier_leaves_out_every_slow_marker() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    markers = [
        line.split(":", 1)[0].strip()
        for line in config["tool:pytest"]["markers"].splitlines()
        if line.strip()
    ]
    expected = " and ".join(f"not {marker}" for marker in markers)
    assert f'./run.sh test -m "{expected}"' in text(README)


def test_readme_lists_every_run_sh_mode() -> None:
    modes = set(run_sh_arms())
    assert modes, "no modes found in run.sh"
    table = set(re.findall(r"^\| `([a-z]+)` \|", text(README), re.M))
    assert modes <= table, f"modes missing from the README's table: {sorted(modes - table)}"


def test_readme_links_every_docs_page() -> None:
    pages = {page.stem for page in DOC_PAGES}
    assert set(EXPECTED_PAGES) <= pages
    linked = set(re.findall(r"\(docs/([A-Z]+)\.md\)", text(README)))
    assert pages <= linked, f"README.md does not link {sorted(pages - linked)}"


@pytest.mark.parametrize("page", DOC_PAGES, ids=[p.name for p in DOC_PAGES])
def test_docs_page_opens_with_its_purpose_and_contents(page: Path) -> None:
    paragraphs = text(page).split("\n\n")
    assert paragraphs[0].startswith("# "), paragraphs[0]
    purpose = paragraphs[1]
    assert purpose.strip(), "the title is followed by a line saying what the page is for"
    assert not purpose.startswith(("#", "Contents")), purpose
    contents = paragraphs[2]
    assert contents.startswith("Contents: "), contents
    listed = {m["target"].lstrip("#") for m in _LINK.finditer(prose(contents))}
    sections = {
        slug(m["text"]) for m in re.finditer(r"^## (?P<text>.+)$", _FENCE.sub("", text(page)), re.M)
    }
    assert listed == sections, f"{page.name}: Contents vs sections {listed ^ sections}"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_console_page_shows_every_screenshot() -> None:
    shots = sorted(p.name for p in (DOCS / "screenshots").glob("*.png"))
    assert shots
    shown = set(relative_links(DOCS / "CONSOLE.md"))
    assert {f"screenshots/{name}" for name in shots} <= shown


@pytest.mark.parametrize("role", ["server", "camera"])
def test_configuration_lists_every_variable_the_settings_read(role: str) -> None:
    page = text(DOCS / "CONFIGURATION.md")
    section = page.split(f"## {role.capitalize()}\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.M))
    missing = known_variables(role) - listed
    assert not missing, f"CONFIGURATION.md's {role} table lacks {sorted(missing)}"
