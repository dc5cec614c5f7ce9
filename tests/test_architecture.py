"""The house (docs/ARCHITECTURE.md): every import points down, and ruff is clean.

The contracts live in pyproject.toml; this test runs them so an upward import
fails the suite, and shows on a copy of the tree that a contract can fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def _copy_tree(tmp_path: Path) -> Path:
    dst = tmp_path / "tree"
    for name in ("console", "db", "maps", "widgets", "tests"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_an_upward_import_breaks_the_house(tmp_path):
    tree = _copy_tree(tmp_path)
    with open(tree / "db" / "errors.py", "a", encoding="utf-8") as f:
        f.write("\nfrom console import tasks  # noqa: E402,F401  (upward, on purpose)\n")
    with open(tree / "console" / "tasks.py", "a", encoding="utf-8") as f:
        f.write("\nfrom PySide6.QtWidgets import QLabel  # noqa: E402,F401\n")
    with open(tree / "maps" / "coords.py", "a", encoding="utf-8") as f:
        f.write("\nimport sqlalchemy  # noqa: E402,F401\n")
    result = _lint(tree)
    assert result.returncode != 0
    out = result.stdout
    assert "The house: widgets > console > db > maps BROKEN" in out
    assert "db.errors -> console.tasks" in out
    assert "console.tasks:" in out and "PySide6.QtWidgets" in out
    assert "No SQL under maps/ and widgets/ BROKEN" in out


def test_ruff_is_clean():
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
