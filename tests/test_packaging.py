"""What ships: the wheel carries the server, not the mock provider, and says how to get the mock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel` of a copy of the sources (the build must not leave build/ in the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("api", "worker", "shared"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(tmp / "dist")], check=True, capture_output=True, timeout=300)
    [built] = (tmp / "dist").glob("sluice-*.whl")
    return built


def test_the_wheel_has_the_server_but_not_the_mock(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("shared/mock/")]
    for needed in ("api/app.py", "worker/main.py", "shared/cli.py", "shared/system.py",
                   "shared/redis/lua/claim.lua", "shared/demo.yaml"):
        assert needed in names


def test_sluice_dev_from_the_wheel_says_how_to_get_the_mock(wheel: Path, tmp_path: Path) -> None:
    """The wheel's files in a fresh venv that sees our dependencies but not the checkout (this venv's
    editable install would find shared/mock in the source tree): as after `pip install sluice`."""
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    [site_dir] = (venv / "lib").glob("python3*/site-packages")
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "msgspec").exists())
    # A path line in a .pth file is added as it is: the .pth files inside it (the editable
    # install's finder) are not run.
    (site_dir / "deps.pth").write_text(f"{installed}\n{deps}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_CONFIG", "PYTHONPATH")}
    python = str(venv / "bin" / "python")
    # Checked first, so a regression fails here instead of starting a whole demo system.
    probe = "import importlib.util as u, shared.cli; print(u.find_spec('shared.mock') is None)"
    assert subprocess.run([python, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip() == "True"
    # An unreachable Redis URL: even if the check above were wrong, nothing reaches a real Redis.
    for argv in (["dev", "--port", "0", "--redis-url", "redis://127.0.0.1:1/0"], ["mock-upstream", "--port", "0"]):
        done = subprocess.run([python, "-m", "shared.cli", *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "mock provider (shared/mock) is not installed" in done.stderr
        assert "pip install -e '.[dev]'" in done.stderr
