"""The scenarios' section of docs/benchmarks.md: rewritten in place, other sections untouched."""

from __future__ import annotations

import re
from pathlib import Path

SECTION_HEADER = "## Rate-limit scenarios (python -m bench.limits)"
_VERDICT = re.compile(r"^\*\*Verdict: (PASS|FAIL)\*\* — (.*)$", re.MULTILINE)


def _split_subsections(body: str) -> tuple[str, dict[str, str]]:
    """Section body -> (text before the first `### `, {subsection header: its text})."""
    parts = re.split(r"(?m)^(?=### )", body)
    head = parts[0] if parts and not parts[0].startswith("### ") else ""
    subs: dict[str, str] = {}
    for part in parts:
        if part.startswith("### "):
            subs[part.splitlines()[0].strip()] = part.rstrip() + "\n"
    return head, subs


def write_section(path: Path, intro: str, order: list[str], fresh: dict[str, str]) -> None:
    """Replaces only this bench's section of `path` (header to the next `## ` header or EOF).

    `fresh` maps subsection headers (`### ...`, one per scenario, in `order`) to their new text;
    subsections of scenarios not run this time are kept from the file as they were.
    """
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION_HEADER), None)
    old_body = ""
    if start is None:
        before, after = text.rstrip("\n") + "\n\n", ""
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        before = "".join(lines[:start])
        old_body = "".join(lines[start + 1:end])
        after = "".join(lines[end:])
    _, old = _split_subsections(old_body)
    subs = {h: fresh.get(h) or old.get(h) for h in order}
    rows = ["| Scenario | Verdict | Figures |", "|---|---|---|"]
    for header, sub in subs.items():
        if sub is None:
            continue
        match = _VERDICT.search(sub)
        verdict, summary = (match.group(1), match.group(2)) if match else ("?", "")
        rows.append(f"| {header.removeprefix('### ')} | {verdict} | {summary} |")
    body = [SECTION_HEADER, "", intro.strip(), "", *rows, ""]
    for sub in subs.values():
        if sub is not None:
            body += [sub.rstrip(), ""]
    section = "\n".join(body).rstrip() + "\n"
    if after:
        section += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp-limits")
    tmp.write_text(before + section + after)
    tmp.replace(path)
