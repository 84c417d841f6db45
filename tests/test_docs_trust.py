"""The docs say that analysing a file runs its code, and ship a CI workflow that is safe for
pull requests from forks."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"


def test_cli_page_says_a_file_is_run() -> None:
    text = (DOCS / "cli.md").read_text()
    assert "**Analysing a file runs its code.**" in text
    assert "ci.md#pull-requests-from-forks" in text


def test_ci_workflow_runs_fork_code_without_secrets_or_write_access() -> None:
    text = (DOCS / "ci.md").read_text()
    workflow = re.search(r"```yaml\n(name: model cost\n.*?)```", text, re.S)
    assert workflow is not None
    yaml = workflow.group(1)
    trigger = re.search(r"^on: (.*)$", yaml, re.M)
    assert trigger is not None and "pull_request" in trigger.group(1)
    assert "pull_request_target" not in yaml and "secrets." not in yaml
    assert re.search(r"^permissions:\n  contents: read$", yaml, re.M)
    section = text.split("### Pull requests from forks", 1)[1]
    assert "pull_request_target" in section and "workflow_run" in section
