"""The documentation cannot rot in silence: the generated op list matches the registry, and
every relative link (and its #anchor) in the READMEs and docs/*.md leads somewhere real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from costmodel import ops_doc

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def prose(text: str) -> str:
    """The page without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """The heading ids GitHub gives a page: lower case, punctuation dropped, spaces to
    hyphens, -1, -2... on repeats."""
    seen: dict[str, int] = {}
    ids = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text()))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]  # http:, https:, mailto:...


def test_ops_md_is_generated_from_the_registry_as_it_is() -> None:
    assert ops_doc.DEFAULT_OUTPUT == ROOT / "docs" / "ops.md"
    assert ops_doc.DEFAULT_OUTPUT.read_text() == ops_doc.render(), (
        "docs/ops.md is out of date: run python -m costmodel.ops_doc")
    assert ops_doc.main(["--check"]) == 0


def test_pages_are_found_and_links_are_parsed() -> None:
    """Guards the two tests below against checking nothing."""
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/conventions.md", "docs/ops.md"} <= names
    assert "docs/conventions.md" in relative_links(ROOT / "README.md")
    assert "conventions.md#op-types" in relative_links(ROOT / "docs" / "graph.md")
    assert {"op-types", "worked-example-the-mobilenetv1-table"} <= anchors(
        ROOT / "docs" / "conventions.md")
    assert "costmodel-analyze" in anchors(ROOT / "docs" / "cli.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_an_existing_file(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_anchor_names_a_heading(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        if anchor and linked.suffix == ".md" and linked.is_file() and \
                anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{page.name}: links to missing headings: {broken}"
