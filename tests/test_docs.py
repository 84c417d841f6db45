"""The documentation cannot rot in silence: the generated op list matches the registry, every
relative link (and its #anchor) in the READMEs and docs/*.md leads somewhere real, and every
`$ costmodel ...` transcript and every Python example shown with its output is what the
command or the program prints now."""

from __future__ import annotations

import contextlib
import difflib
import re
import shlex
from pathlib import Path

import pytest

from costmodel.report import ops_doc

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
        "docs/ops.md is out of date: run python -m costmodel.report.ops_doc")
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
    assert len(shown_commands(ROOT / "docs" / "cli.md")) >= 15
    assert {"tinynet.py", "noshape.py"} <= set(model_files(ROOT / "docs" / "cli.md"))
    assert len(shown_programs(ROOT / "docs" / "graph.md")) == 4


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


FENCED = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.M | re.S)
HEAD = re.compile(r"\|\s*head\s+-(\d+)$")


def shown_commands(page: Path) -> list[tuple[str, list[str]]]:
    """Each `$ costmodel ...` line of a text block with the lines shown under it. Only
    commands whose output is all shown are taken: no pipe but `| head -N`; a block that shows
    commands and no output at all is a usage summary, not a transcript."""
    found = []
    for lang, body in FENCED.findall(page.read_text()):
        if lang != "text":
            continue
        block: list[tuple[str, list[str]]] = []
        command, shown = None, []
        for line in [*body.splitlines(), "$ end"]:
            if line.startswith("$ "):
                if command is not None:
                    block.append((command, shown))
                command, shown = None, []
                text = re.sub(r"\s+# .*$", "", line[2:]).strip()
                if text.startswith("costmodel ") and "|" not in HEAD.sub("", text):
                    command = text
            elif command is not None:
                shown.append(line)
        if any(lines for _, lines in block):
            found.extend(block)
    return found


def model_files(page: Path) -> dict[str, str]:
    """The files a page shows as ```python blocks that open with `# name.py`."""
    return {m.group(1): body for lang, body in FENCED.findall(page.read_text())
            if lang == "python" and (m := re.match(r"# (\w+\.py)\n", body))}


#: Pages whose examples are self-contained: every file a command or program reads is shown on
#: the page or ships with the package. (ci.md's transcripts need a project with a lock file
#: and a model changed after it was written, which the page describes but does not show.)
SELF_CONTAINED = [ROOT / "docs" / name for name in
                  ("cli.md", "conventions.md", "fusion.md", "graph.md", "guidelines.md",
                   "latency.md", "llm.md", "memory.md", "tracing.md")]


@pytest.mark.parametrize("page", [p for p in SELF_CONTAINED if shown_commands(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shown_command_outputs_are_what_the_command_prints(
        page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Runs every `$ costmodel ...` shown on the page, in a folder holding the page's model
    files, and compares its output with the lines shown."""
    from costmodel.cli import main

    for name, body in model_files(page).items():
        (tmp_path / name).write_text(body)
    monkeypatch.chdir(tmp_path)
    stale = []
    for command, shown in shown_commands(page):
        head = HEAD.search(command)
        argv = shlex.split(HEAD.sub("", command).replace("2>/dev/null", ""))[1:]
        with contextlib.suppress(SystemExit):  # argparse errors exit from inside main
            main(argv)
        out, err = capsys.readouterr()
        printed = out.splitlines() + ([] if "2>/dev/null" in command else err.splitlines())
        if head:
            printed = printed[: int(head.group(1))]
        while printed and not printed[-1].strip():  # a transcript drops trailing blank lines
            printed.pop()
        if printed != shown:
            diff = difflib.unified_diff(shown, printed, "shown", "printed", lineterm="", n=0)
            stale.append(f"$ {command}\n" + "\n".join(list(diff)[:8]))
    assert not stale, "outputs changed; rerun and paste:\n" + "\n".join(stale)


def test_readme_quick_start_table_is_what_analyze_prints(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The README shows the first lines of its quick start's `costmodel analyze`: they must
    be what it prints now (a formula change moves them, as the pooling taps did)."""
    from costmodel.cli import main

    shown = next(body for lang, body in FENCED.findall((ROOT / "README.md").read_text())
                 if body.startswith("costmodel.zoo:shufflenet_v2_x1_0  [")).splitlines()
    main(["analyze", "costmodel.zoo:shufflenet_v2_x1_0"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[:len(shown)] == shown


PROGRAM = re.compile(r"^```python\n((?:(?!```).)*?)^```[ \t]*\n\s*```text\n((?:(?!```).)*?)^```",
                     re.M | re.S)


def shown_programs(page: Path) -> list[tuple[str, str]]:
    """Each ```python block that a ```text block follows directly: a program and its output
    (a text block of `$ ` commands or `>>> ` lines is a transcript, not that)."""
    return [(code, shown) for code, shown in PROGRAM.findall(page.read_text())
            if not shown.startswith(("$ ", ">>> ")) and not code.startswith("# ")]


@pytest.mark.parametrize("page", [p for p in SELF_CONTAINED if shown_programs(p)],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shown_program_outputs_are_what_the_program_prints(
        page: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs every Python example shown with its output and compares what it prints."""
    stale = []
    for code, shown in shown_programs(page):
        exec(compile(code, f"{page.name} example", "exec"), {"__name__": "__doc_example__"})
        printed = capsys.readouterr().out.rstrip("\n").splitlines()
        if printed != shown.rstrip("\n").splitlines():
            diff = difflib.unified_diff(shown.splitlines(), printed, "shown", "printed",
                                        lineterm="", n=0)
            stale.append(f"{code.splitlines()[0]}...\n" + "\n".join(list(diff)[:8]))
    assert not stale, "outputs changed; rerun and paste:\n" + "\n".join(stale)
