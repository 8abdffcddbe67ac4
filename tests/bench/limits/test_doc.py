"""`python -m bench.limits` rewrites only its own section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from bench.limits.doc import SECTION_HEADER, write_section

ORDER = ["### Burst", "### Replicas"]


def sub(header: str, verdict: str, text: str) -> str:
    return f"{header}\n\n**Verdict: {verdict}** — {text}\n\nDetails of {text}.\n"


def test_fresh_subsections_replace_old_ones_and_the_rest_is_kept(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Rows\n\nrow text\n\n"
                   f"{SECTION_HEADER}\n\nold intro\n\n{sub('### Burst', 'FAIL', 'old burst')}\n"
                   f"{sub('### Replicas', 'PASS', 'old replicas')}\n## After\n\ntail text\n")
    write_section(doc, "new intro", ORDER, {"### Burst": sub("### Burst", "PASS", "new burst")})
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n## Rows\n\nrow text\n") and text.endswith("## After\n\ntail text\n")
    assert "new intro" in text and "old intro" not in text
    assert "new burst" in text and "old burst" not in text
    assert "Details of old replicas." in text  # not run this time: kept as it was
    assert "| Burst | PASS | new burst |" in text and "| Replicas | PASS | old replicas |" in text


def test_a_doc_without_the_section_gets_it_appended(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nsome rows\n")
    write_section(doc, "intro", ORDER, {"### Replicas": sub("### Replicas", "PASS", "r")})
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nsome rows\n\n" + SECTION_HEADER)
    assert "### Burst" not in text and "| Replicas | PASS | r |" in text
