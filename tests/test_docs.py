"""The documentation: every Python block of README.md and docs/*.md runs, the site is whole.

Each ```python block runs as a script of its own in a fresh interpreter, in a temporary
directory, with ``-W error::ResourceWarning``; it must exit with status 0 and print no
traceback (a leaked resource shows up as an ignored exception, a failed child process
as its traceback). Blocks of the same text (a README example repeated in a guide) run
once; three run at a time, since they mostly wait for their time limits.

Two HTML comments, invisible on the rendered page, prepare a block when it needs it:

- ``<!-- docs-test: setup`` *code* ``-->`` just before a block: *code* runs first, in
  the same script (a stand-in for a library the example pretends to use, say).
- ``<!-- docs-test: continue -->`` just before a block: it runs after the page's
  previous block, in the same script (a page whose examples build on each other).

Any other ```` ``` ```` language (bash, text, ...) is not run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import watchdog_timeout

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

# A fenced block: its language and its text. A marker is the last thing before a block.
FENCE = re.compile(r"^```(?P<language>[\w-]*)\n(?P<code>.*?)^```$", re.DOTALL | re.MULTILINE)
SETUP = re.compile(r"<!-- docs-test: setup\n(?P<code>.*?)-->\s*\Z", re.DOTALL)
CONTINUE = re.compile(r"<!-- docs-test: continue -->\s*\Z")


@dataclass(frozen=True)
class Block:
    """A Python block ready to run: where it starts, and the script it makes."""

    where: str
    script: str


def python_blocks(page: Path) -> list[Block]:
    """The page's ```python blocks, each with its setup or the blocks it continues."""
    text = page.read_text()
    blocks: list[Block] = []
    previous_end = 0
    for match in FENCE.finditer(text):
        if match["language"] != "python":
            previous_end = match.end()
            continue
        before = text[previous_end : match.start()]
        previous_end = match.end()
        name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page
        where = f"{name}:{text.count(chr(10), 0, match.start()) + 1}"
        script = match["code"]
        setup = SETUP.search(before)
        if setup:
            script = setup["code"] + "\n" + script
        elif CONTINUE.search(before):
            if not blocks:
                raise ValueError(f"{where}: `docs-test: continue` with no block before it")
            script = blocks[-1].script + "\n" + script
        blocks.append(Block(where, script))
    return blocks


def unique_blocks() -> list[Block]:
    seen: set[str] = set()
    unique = []
    for page in PAGES:
        for block in python_blocks(page):
            if block.script not in seen:
                seen.add(block.script)
                unique.append(block)
    return unique


BLOCKS = unique_blocks()

# Blocks known to fail, found by a line of their text (line numbers move), with the reason.
# Strict: once a block runs, its entry must go.
KNOWN_FAILING: dict[str, str] = {}


def marked(block: Block) -> object:
    reasons = [reason for text, reason in KNOWN_FAILING.items() if text in block.script]
    marks = [pytest.mark.xfail(reason=reasons[0], strict=True)] if reasons else []
    return pytest.param(block, id=block.where, marks=marks)


def run(block: Block, directory: Path) -> subprocess.CompletedProcess[str]:
    script = directory / "block.py"
    script.write_text(block.script)
    return subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(script)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="session")
def block_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """The selected blocks, started at once three at a time: most of their time is waiting."""
    selected: list[Block] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)  # only parametrized tests have one
        block = callspec.params.get("block") if callspec else None
        if isinstance(block, Block):
            selected.append(block)
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="docs-blocks") as pool:
        runs = {
            block.where: pool.submit(run, block, tmp_path_factory.mktemp("block"))
            for block in selected
        }
        yield runs
        for future in runs.values():
            future.cancel()


@pytest.mark.parametrize("block", [marked(block) for block in BLOCKS])
def test_docs_python_block_runs(
    block: Block, block_runs: dict[str, Future[subprocess.CompletedProcess[str]]]
) -> None:
    result = block_runs[block.where].result()
    assert result.returncode == 0, f"{block.where}\n{result.stderr}"
    # A child process or a finalizer can fail while the script still exits with 0.
    for sign in ("Traceback", "Exception ignored"):
        assert sign not in result.stderr, f"{block.where}\n{result.stderr}"


def test_docs_markers_set_up_and_continue_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\na = 1\n```\n\n"
        "<!-- docs-test: continue -->\n```python\nb = a\n```\n\n"
        "```bash\nls\n```\n"
        "<!-- docs-test: setup\nimport json\n-->\n```python\njson.dumps(1)\n```\n"
        "```python\nc = 3\n```\n"
    )
    scripts = [block.script for block in python_blocks(page)]
    assert scripts == ["a = 1\n", "a = 1\n\nb = a\n", "import json\n\njson.dumps(1)\n", "c = 3\n"]


def test_docs_every_page_has_python_blocks_found() -> None:
    assert len(BLOCKS) >= 10
    assert not any(page.read_text().count("```py\n") for page in PAGES)  # would not run


def test_docs_markers_are_spelled_right() -> None:
    for page in PAGES:
        for marker in re.findall(r"<!-- docs-test:\s*(\S+)", page.read_text()):
            assert marker in ("setup", "continue"), f"{page.name}: docs-test: {marker}"


def test_docs_reference_renders_every_public_name() -> None:
    reference = (DOCS / "reference.md").read_text()
    rendered = re.findall(r"^::: watchdog_timeout\.(\w+)$", reference, flags=re.MULTILINE)
    assert sorted(rendered) == sorted(watchdog_timeout.__all__)


def test_docs_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    in_nav = set(re.findall(r"^\s+- .*: (\S+\.md)$", config, flags=re.MULTILINE))
    assert in_nav == {page.name for page in DOCS.glob("*.md")}


def test_docs_relative_links_of_the_readme_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def public_docstrings() -> dict[str, str]:
    """The docstring of every public name and of its public members, by qualified name."""
    docstrings = {"watchdog_timeout": watchdog_timeout.__doc__ or ""}
    for name in watchdog_timeout.__all__:
        value = getattr(watchdog_timeout, name)
        docstrings[name] = getattr(value, "__doc__", None) or ""
        if isinstance(value, type):
            for member, attribute in vars(value).items():
                if not member.startswith("_") or member in ("__init__", "__call__"):
                    docstrings[f"{name}.{member}"] = getattr(attribute, "__doc__", None) or ""
    return docstrings


def test_docs_docstrings_render_as_markdown() -> None:
    # mkdocstrings renders docstrings as Markdown with Google sections: a reST role shows
    # as ":class:" text, and only `Examples:` turns `>>>` lines into code (in an
    # `Example:` block they become nested quotes).
    wrong = {
        name: found
        for name, docstring in public_docstrings().items()
        if (found := re.findall(r":\w+:`[^`]+`|^[ \t]*Example:$", docstring, flags=re.MULTILINE))
    }
    assert not wrong
