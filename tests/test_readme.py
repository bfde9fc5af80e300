"""The README: a front page with its two set-up commands, which CI runs verbatim.

Its Python blocks run in tests/test_docs.py, with those of the documentation site.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()


def sections() -> list[str]:
    return re.findall(r"^## (.+)$", README, flags=re.MULTILINE)


def test_readme_gives_two_set_up_commands() -> None:
    set_up = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", set_up, flags=re.DOTALL)
    assert len(commands) == 2
    demo, tests = commands
    assert "examples/quickstart.py" in demo
    assert "pytest" in tests
    assert tests in CI  # CI runs exactly this


def test_readme_says_how_long_the_tests_take() -> None:
    set_up = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"The tests take about \d+ min", set_up)


def test_readme_ci_runs_the_suite_beside_a_cpu_hog() -> None:
    test_command = re.findall(r"```bash\n(.*?)\n```", README, flags=re.DOTALL)[1]
    pytest_command = test_command.rsplit("&& ", 1)[1]  # ".venv/bin/python -m pytest -q"
    hog_run = CI.split("python3 -c 'while 1: pass' &", 1)[1].split('kill "$hog"\n', 1)[0]
    assert pytest_command.split(" -q")[0] in hog_run


def test_readme_is_a_front_page() -> None:
    assert README.count("\n") < 300  # the guides and the reference are in docs/
    titles = " ".join(sections())
    for feature in ("@timeout", "deadline()", "Watchdog", "shield()", "StoppableThread"):
        assert feature in titles
    assert "## Choosing an isolation" in README
    assert "(benchmarks/results/chart.png)" in README


def test_readme_has_one_example_per_feature() -> None:
    for title in sections():
        if title.startswith("`"):  # a feature
            body = README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
            assert body.count("```python") == 1, title
