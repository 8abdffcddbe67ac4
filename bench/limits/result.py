"""A scenario's result: figures, checks against its targets, notes; as text and as Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SCENARIOS = ("burst", "replicas", "tokens", "surprise")
HEADERS = {
    "burst": "### Burst",
    "replicas": "### Replicas",
    "tokens": "### Tokens",
    "surprise": "### Surprise",
}


@dataclass(slots=True)
class Check:
    target: str
    ok: bool
    measured: str


@dataclass(slots=True)
class Result:
    key: str
    title: str
    summary: str = ""
    config: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0
    load_before: str = ""
    load_after: str = ""
    mode: str = ""
    code: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def figure(self, name: str, value: object) -> None:
        self.figures.append((name, str(value)))

    def check(self, target: str, ok: bool, measured: str) -> None:
        self.checks.append(Check(target, ok, measured))

    def text(self) -> str:
        lines = [f"== {self.title}: {'PASS' if self.passed else 'FAIL'} ({self.seconds:.0f} s) =="]
        lines += [f"  config: {c}" for c in self.config]
        width = max((len(n) for n, _ in self.figures), default=0)
        lines += [f"  {n.ljust(width)}  {v}" for n, v in self.figures]
        lines += [f"  [{'ok' if c.ok else 'FAIL'}] {c.target}: {c.measured}" for c in self.checks]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        out = [HEADERS[self.key], "", f"**Verdict: {verdict}** — {self.summary}", "",
               f"{self.title}. Run {self.started} against {self.code} ({self.mode} mode, "
               f"{self.seconds:.0f} s); "
               f"load average before {self.load_before}, after {self.load_after}.", "",
               "Config:", ""]
        out += [f"- {c}" for c in self.config]
        out += ["", "| Figure | Value |", "|---|---|"]
        out += [f"| {n} | {v} |" for n, v in self.figures]
        out += ["", "| Target | Measured | Pass |", "|---|---|---|"]
        out += [f"| {c.target} | {c.measured} | {'yes' if c.ok else '**no**'} |" for c in self.checks]
        if self.notes:
            out += ["", "Analysis:", ""]
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


@dataclass(slots=True)
class Ctx:
    quick: bool
    redis_url: str
    log_dir: Path
    surprise_latency_ms: float = 0.0

