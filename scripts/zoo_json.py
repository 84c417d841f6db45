"""Write, or compare against, the `--format json` report of every zoo model: the check that a
refactor changed no figure. `python scripts/zoo_json.py save DIR` before the change,
`python scripts/zoo_json.py compare DIR` after; exit 1 on any difference."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def reports() -> dict[str, dict]:
    import contextlib
    import io

    from costmodel.cli import main
    from costmodel.zoo import MODELS

    out = {}
    for name in sorted(MODELS):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(["analyze", f"costmodel.zoo:{name}", "--by", "node", "--format", "json"])
        out[name] = {"exit": code, "report": json.loads(buffer.getvalue()) if code == 0 else None}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["save", "compare"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    current = reports()
    if args.action == "save":
        args.folder.mkdir(parents=True, exist_ok=True)
        for name, report in current.items():
            (args.folder / f"{name}.json").write_text(json.dumps(report, indent=1, sort_keys=True))
        print(f"saved {len(current)} reports to {args.folder}")
        return 0
    differ = [name for name, report in current.items()
              if not (args.folder / f"{name}.json").exists()
              or json.loads((args.folder / f"{name}.json").read_text()) != report]
    print(f"{len(current) - len(differ)} of {len(current)} reports equal"
          + (f"; differ: {', '.join(differ)}" if differ else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
