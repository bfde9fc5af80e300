"""docs/coming-from.md: every ``python`` block runs alone; the peers' code stays in ``text``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = (Path(__file__).resolve().parent.parent / "docs" / "coming-from.md").read_text()
BLOCK = re.compile(r"^## (?P<heading>[^\n]+)$|^```(?P<lang>\w*)\n(?P<code>.*?)^```$", re.M | re.S)


def _blocks() -> list[tuple[str, str, str]]:
    """``(heading, language, code)`` for each fenced block, under the heading it follows."""
    heading = "intro"
    found = []
    for match in BLOCK.finditer(GUIDE):
        if match["heading"] is not None:
            heading = match["heading"].strip()
        else:
            found.append((heading, match["lang"], match["code"]))
    return found


BLOCKS = _blocks()
PYTHON = [(heading, code) for heading, lang, code in BLOCKS if lang == "python"]


def _ids() -> list[str]:
    """The heading, numbered where a section has several blocks."""
    headings = [heading for heading, _ in PYTHON]
    seen: dict[str, int] = {}
    ids = []
    for heading in headings:
        seen[heading] = seen.get(heading, 0) + 1
        several = headings.count(heading) > 1
        ids.append(f"{heading}-{seen[heading]}" if several else heading)
    return ids


def test_every_peer_has_a_section_with_runnable_code() -> None:
    peers = (
        "func-timeout",
        "stopit",
        "timeout-decorator",
        "wrapt-timeout-decorator",
        "pebble",
        "asyncio.timeout",
        "trio",
    )
    headings = {heading for heading, _ in PYTHON}
    assert set(peers) <= headings
    assert {heading for heading, lang, _ in BLOCKS if lang == "text"} >= set(peers)


def test_every_block_is_python_or_text() -> None:
    # A peer's code in a python block would be run (and fail: peers are not installed).
    assert {lang for _, lang, _ in BLOCKS} == {"python", "text"}


def test_process_blocks_guard_their_main() -> None:
    for heading, code in PYTHON:
        if 'isolation="process"' in code:
            assert 'if __name__ == "__main__":' in code, heading


@pytest.mark.parametrize("code", [code for _, code in PYTHON], ids=_ids())
def test_block_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
