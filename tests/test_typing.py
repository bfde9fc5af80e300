"""The static type checks in tests/typing pass under ``mypy --strict``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed here (the lint extra; CI installs it)",
)
def test_typing_checks_pass_under_mypy() -> None:
    # From the project root, so that pyproject.toml's [tool.mypy] (strict) applies.
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "tests/typing"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
