"""The user guide stays true: every command in ``docs/guide/*.md`` runs, in order, and exits as the guide says.

How a guide chapter is run (the convention writers of ``docs/`` follow):

* Commands live in fenced ```` ```console ```` blocks. A line starting with ``$ `` is a command; lines right after
  it starting with ``> `` continue it (a here-document, a long pipeline). Every other line of the block is sample
  output for the reader and is not checked.
* A command ending in a ``# exit N`` comment must exit with status N (a refusal the guide shows on purpose);
  every other command must exit 0.
* All the blocks of one chapter run as one ``bash`` script with ``set -eo pipefail``, so shell variables set by
  one command (``JOB=$(...)``) flow to the next ones, in a fresh working folder holding a copy of the
  repository's ``fixtures/`` and ``examples/`` and a fresh ``TUNEPORT_HOME``. Background processes a chapter
  starts (``tuneport serve ... &``) are stopped when the script ends.
* A block right after an HTML comment ``<!-- docs-test: requires vllm -->`` runs only where vLLM is importable
  (the main development environment has no vLLM); the comment is invisible in rendered Markdown.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDE = DOCS / "guide"
CHAPTER_TIMEOUT_S = 420

_FENCE = re.compile(r"^```(\w*)\s*$")
_EXIT = re.compile(r"\s#\s*exit\s+(\d+)\s*$")
_REQUIRES = re.compile(r"<!--\s*docs-test:\s*requires\s+(\w+)\s*-->")


@dataclass
class Command:
    """One ``$`` command of a guide (with its ``>`` continuation lines)."""

    source: str
    line: int
    text: str
    expect: int = 0
    requires: str | None = None


def extract_commands(markdown: str, source: str = "<doc>") -> list[Command]:
    """The runnable commands of ``markdown``, in order (see the module docstring for the convention)."""
    commands: list[Command] = []
    in_block, runnable, requires, pending_requires = False, False, None, None
    for number, line in enumerate(markdown.splitlines(), 1):
        fence = _FENCE.match(line)
        if fence and not in_block:
            in_block, runnable = True, fence.group(1) == "console"
            requires, pending_requires = pending_requires, None
            continue
        if fence and in_block:
            in_block = False
            continue
        if not in_block:
            marker = _REQUIRES.search(line)
            if marker:
                pending_requires = marker.group(1)
            elif line.strip():
                pending_requires = None
            continue
        if not runnable:
            continue
        if line.startswith("$ "):
            commands.append(Command(source, number, line[2:], requires=requires))
        elif line.startswith("> ") or line == ">":
            if not commands or commands[-1].line + commands[-1].text.count("\n") != number - 1:
                raise ValueError(f"{source}:{number}: a '>' continuation line must follow a '$' command")
            commands[-1].text += "\n" + line[2:]
    for command in commands:
        last = command.text.splitlines()[-1]
        match = _EXIT.search(last)
        if match:
            command.expect = int(match.group(1))
    return commands


def build_script(commands: list[Command]) -> str:
    """One bash script running ``commands`` in order, failing loudly at the first unexpected exit status."""
    parts = [
        "set -eo pipefail",
        # Stop whatever the chapter left running in the background (servers), then wait for it.
        "trap 'for p in $(jobs -p); do kill $p 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT",
    ]
    for command in commands:
        where = f"{command.source}:{command.line}"
        parts.append(f"echo {_quote('+ ' + where + ': ' + command.text.splitlines()[0])} >&2")
        if command.expect:
            parts += [
                "set +e",
                command.text,
                "rc=$?",
                "set -e",
                f'if [ "$rc" != {command.expect} ]; then echo "{where}: expected exit {command.expect}, '
                'got $rc" >&2; exit 97; fi',
            ]
        else:
            parts.append(command.text)
    return "\n".join(parts) + "\n"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _chapters() -> list[Path]:
    return sorted(GUIDE.glob("*.md"))


def _available(requirement: str | None) -> bool:
    return requirement is None or importlib.util.find_spec(requirement) is not None


# -- the convention itself ---------------------------------------------------------------------------------------


def test_extractor_reads_commands_continuations_exit_codes_and_requirements() -> None:
    doc = "\n".join(
        [
            "Intro `$ not a command`.",
            "```console",
            "$ echo one",
            "one",
            "$ cat > f.txt <<'EOF'",
            "> a",
            "> EOF",
            "$ false   # exit 1",
            "```",
            "```text",
            "$ not run",
            "```",
            "<!-- docs-test: requires vllm -->",
            "```console",
            "$ vllm-only",
            "```",
            "```console",
            "$ after",
            "```",
        ]
    )
    commands = extract_commands(doc)
    assert [c.text for c in commands] == ["echo one", "cat > f.txt <<'EOF'\na\nEOF", "false   # exit 1", "vllm-only",
                                          "after"]  # fmt: skip
    assert [c.expect for c in commands] == [0, 0, 1, 0, 0]
    assert [c.requires for c in commands] == [None, None, None, "vllm", None]
    assert [c.line for c in commands] == [3, 5, 8, 15, 18]


def test_extractor_refuses_a_stray_continuation_line() -> None:
    with pytest.raises(ValueError, match=":3: a '>' continuation"):
        extract_commands("```console\necho\n> x\n```", "x.md")


def test_script_fails_on_an_unexpected_exit_status_and_accepts_an_annotated_one(tmp_path: Path) -> None:
    ok = build_script(extract_commands("```console\n$ X=5\n$ (exit 3)   # exit 3\n$ test $X = 5\n```"))
    assert subprocess.run(["bash", "-c", ok], cwd=tmp_path).returncode == 0
    bad = build_script(extract_commands("```console\n$ (exit 2)   # exit 3\n```"))
    assert subprocess.run(["bash", "-c", bad], cwd=tmp_path, capture_output=True).returncode == 97
    failing = build_script(extract_commands("```console\n$ false\n$ touch never\n```"))
    assert subprocess.run(["bash", "-c", failing], cwd=tmp_path).returncode != 0
    assert not (tmp_path / "never").exists()


# -- the docs ----------------------------------------------------------------------------------------------------


def test_every_chapter_is_linked_from_the_index_and_every_local_link_resolves() -> None:
    chapters = _chapters()
    assert len(chapters) >= 6, "the guide has six chapters"
    index = (DOCS / "README.md").read_text("utf-8")
    for chapter in chapters:
        assert f"guide/{chapter.name}" in index, f"docs/README.md does not link {chapter.name}"
    for page in [DOCS / "README.md", *chapters]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: broken link {target}"


def test_every_chapter_has_commands() -> None:
    for chapter in _chapters():
        assert extract_commands(chapter.read_text("utf-8"), chapter.name), f"{chapter.name} runs nothing"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", _chapters(), ids=lambda p: p.stem)
def test_chapter_runs(chapter: Path, tmp_path: Path) -> None:
    commands = extract_commands(chapter.read_text("utf-8"), f"docs/guide/{chapter.name}")
    runnable = [c for c in commands if _available(c.requires)]
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "fixtures", work / "fixtures", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "examples", work / "examples")
    venv_bin = str(Path(sys.executable).parent)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "TUNEPORT_")) and key != "PYTEST_CURRENT_TEST"
    }
    env.update(
        PATH=venv_bin + os.pathsep + env.get("PATH", ""),
        TUNEPORT_HOME=str(tmp_path / "home"),
        TUNEPORT_NUM_THREADS="1",
        TMPDIR=str(tmp_path),
    )
    script = build_script(runnable)
    (tmp_path / "chapter.sh").write_text(script, "utf-8")
    result = subprocess.run(
        ["bash", str(tmp_path / "chapter.sh")], cwd=work, env=env, capture_output=True, text=True,
        timeout=CHAPTER_TIMEOUT_S, start_new_session=True,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"{chapter.name}: a command failed (exit {result.returncode})\n--- stderr (tail)\n{result.stderr[-6000:]}"
        f"\n--- stdout (tail)\n{result.stdout[-3000:]}"
    )
