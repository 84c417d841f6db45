"""docs/symbolic.md's code runs as written, and its printed table is what the code prints."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "symbolic.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def test_symbolic_page_code_runs_and_prints_what_it_shows() -> None:
    text = PAGE.read_text()
    blocks = [(m.group(1), m.group(2), text[:m.start()]) for m in FENCE.finditer(text)]
    code = [body for lang, body, _ in blocks if lang == "python"]
    assert len(code) >= 6
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for body in code:
            exec(compile(body, str(PAGE), "exec"), namespace)
    shown = [body for lang, body, before in blocks
             if lang == "text" and before.rstrip().endswith("which prints")]
    assert shown, "the page shows a printed table"
    for body in shown:
        assert body.strip() in out.getvalue()
