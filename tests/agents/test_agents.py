"""Real coding-agent CLIs against a running Sluice, each inside a loopback-only network namespace.

Claude Code (`claude -p`) and Codex CLI (`codex exec`) from npm, pinned in tests/agents/package.json,
and aider (`aider --message`) from PyPI, pinned in tests/agents/aider-requirements.txt (its own venv:
it brings LiteLLM and a hundred other packages). Each runs against the Mistral/Devstral-strict and
the Anthropic upstream of the mock, Claude Code and Codex also against Gemini and OpenAI
(tests/agents/session.py starts everything inside the namespace). Claude Code and Codex complete a
task that needs a tool call and its result: the mock asks for their file-reading tool, the agent
runs it, and the file's contents must reach the upstream in the next turn, whose answer the agent
prints. aider has no function tools; its loop is the edit it applies from the answer, so the file
must change.

The CLIs are installed on first use (npm install; a venv for aider) and the tests skip, saying why,
only when that install is impossible here (no npm, no network to the registries) or the machine
cannot make a network namespace (`unshare -n` needs root).

What runs where: the default run (`scripts/test.sh`, and so CI) takes the six sessions the issue
asks for, each agent against the Mistral/Devstral-strict and the Anthropic upstream; the Gemini and
OpenAI sessions of Claude Code and Codex are also marked `agents_extra`, which pyproject's addopts
deselect, and run with `-m agents` (all ten). Every step has a bound: an install (npm 300 s, pip
600 s), a session (300 s, the agent itself 240 s), a test with its first-use install (900 s).
Deselect the whole suite with `-m "not agents"`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SECRET = "the-launch-code-is-4217"

INSTALL_NPM_SECONDS, INSTALL_PIP_SECONDS, SESSION_SECONDS = 300, 600, 300
pytestmark = [pytest.mark.agents, pytest.mark.timeout(900)]  # an install on first use + one session


def _install_npm() -> str | None:
    """None when the npm CLIs are ready, else why they cannot be."""
    if (HERE / "node_modules" / ".bin" / "claude").exists() and (HERE / "node_modules" / ".bin" / "codex").exists():
        return None
    if shutil.which("npm") is None:
        return "npm is not installed (apt-get install nodejs npm)"
    try:
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save"], cwd=HERE,
                              capture_output=True, timeout=INSTALL_NPM_SECONDS)
    except subprocess.TimeoutExpired:
        return f"npm install took over {INSTALL_NPM_SECONDS} s (no route to the registry?)"
    if done.returncode != 0:
        return f"npm install failed: {done.stderr.decode(errors='replace')[-300:]}"
    return None


def _install_aider() -> str | None:
    venv = HERE / ".venv-aider"
    if (venv / "bin" / "aider").exists():
        return None
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    try:
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "-r",
                              str(HERE / "aider-requirements.txt")],
                             capture_output=True, timeout=INSTALL_PIP_SECONDS) if made.returncode == 0 else made
    except subprocess.TimeoutExpired:
        shutil.rmtree(venv, ignore_errors=True)
        return f"pip install aider-chat took over {INSTALL_PIP_SECONDS} s (no route to the registry?)"
    if pip.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        return f"pip install aider-chat failed: {pip.stderr.decode(errors='replace')[-300:]}"
    return None


@pytest.fixture(scope="session")
def namespaces() -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode:
        pytest.skip("cannot make a network namespace here (`unshare -n` needs root)")


def _session(agent: str, upstream: str, tmp_path: Path) -> dict[str, object]:
    out = tmp_path / "report.json"
    command = (f"ip link set lo up && exec {sys.executable} -m tests.agents.session --agent {agent} "
               f"--upstream {upstream} --scratch {tmp_path / 'scratch'} --out {out}")
    done = subprocess.run(["unshare", "-n", "sh", "-c", command], cwd=ROOT, capture_output=True,
                          timeout=SESSION_SECONDS, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    report: dict[str, object] = json.loads(out.read_text())
    return report


_EXTRA = pytest.mark.agents_extra  # beyond the two upstreams: `-m agents` runs them


@pytest.mark.parametrize("upstream", ["mistral", "anthropic", pytest.param("gemini", marks=_EXTRA),
                                      pytest.param("openai", marks=_EXTRA)])
@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_agent_completes_a_tool_loop(namespaces: None, agent: str, upstream: str, tmp_path: Path) -> None:
    reason = _install_npm()
    if reason:
        pytest.skip(reason)
    report = _session(agent, upstream, tmp_path)
    assert report["exit"] == 0, report
    status = report["upstream_status"]
    assert isinstance(status, dict) and set(status) == {"200"} and status["200"] >= 2, report  # every turn accepted
    results = report["tool_results"]
    assert isinstance(results, list) and any(SECRET in r for r in results), report  # the tool ran, its result went up
    assert "Tool result received" in str(report["stdout"]), report  # and the answer after it came back


@pytest.mark.parametrize("upstream", ["mistral", "anthropic"])
def test_aider_applies_an_edit(namespaces: None, upstream: str, tmp_path: Path) -> None:
    reason = _install_aider()
    if reason:
        pytest.skip(reason)
    report = _session("aider", upstream, tmp_path)
    assert report["exit"] == 0, report
    assert report["upstream_status"] == {"200": 1}, report
    assert report["notes"] == SECRET + "-checked\n", report
