"""The README's measured results, for the docs pages (run by markdown-exec at build time).

The README's results tables are written by ``make results`` (scripts/results.py) between
``<!-- results:NAME:begin -->`` / ``end`` markers; the app pages show the rows of their app
from there, so the site always has the README's numbers and never a copy typed by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def block(name: str) -> list[str]:
    """The lines between the README's ``results:NAME`` markers."""
    text = README.read_text()
    m = re.search(rf"<!-- results:{name}:begin -->\n(.*?)<!-- results:{name}:end -->", text, re.S)
    if m is None:
        raise LookupError(f"README.md has no results:{name} block")
    return m.group(1).strip("\n").split("\n")


def _table_and_note(lines: list[str]) -> tuple[list[str], list[str], str]:
    table = [line for line in lines if line.startswith("|")]
    note = " ".join(line for line in lines if line.strip() and not line.startswith("|"))
    return table[:2], table[2:], note


def rows(app: str) -> str:
    """Markdown: the README's results row(s) of ``app`` with the header and the measurement
    note, or a note that there is none yet."""
    if app == "classification":
        header, body, note = _table_and_note(block("classification"))
    else:
        header, body, note = _table_and_note(block("apps"))
        body = [r for r in body if re.match(rf"\| `{app}[`: ]", r)]
    if not body:
        return (f'!!! note "No measured row yet"\n    README.md has no results row for '
                f"`{app}` yet. `make results RESULTS_ARGS=\"--only {app}\"` measures it "
                "(seeds 0-4) and writes it there, and this page shows it on the next build.\n")
    return "\n".join(header + body) + f"\n\n{note}\n"


def section(title: str) -> str:
    """The first table of the README section ``### title`` (e.g. the speed table)."""
    text = README.read_text()
    start = text.index(f"### {title}")
    lines = text[start:].split("\n")[1:]
    out, seen = [], False
    for line in lines:
        if line.startswith("|"):
            out.append(line)
            seen = True
        elif seen:
            break
    return "\n".join(out) + "\n"
