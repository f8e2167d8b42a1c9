"""The shell commands of README.md: extraction, splitting, and checking a tool's command line without running it.

Used by ``tests/test_readme_commands.py``. A command is one logical line of a fenced ``bash``/``sh``/``shell``
block (``\\`` continuations joined, a trailing ``# comment`` removed, runs of blanks collapsed), a line of an
untagged fenced block that starts like a command (``python``, ``make``, ``torchrun``, ``.venv/bin/...``), or an
inline code span outside fenced blocks that is a whole ``python tools/...`` or ``make ...`` command.
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGS = {'bash', 'sh', 'shell', 'console'}
COMMAND_START = re.compile(r'^(python3?|make|torchrun|srun|\.venv/bin/\S+)(\s|$)')
INLINE_COMMAND = re.compile(r'`((?:python tools/|make )[^`]+)`')
TOOL_SCRIPT = re.compile(r'^tools/\w+\.py$')
# files of the repository a command may name: option files, configs, tools and the shipped weights
REPO_PATH = re.compile(r'(?:^|[=:,])((?:options|tools|tests/data)/[\w./-]+)')


@dataclass(frozen=True)
class Command:
    """One README command: its normalised text and the README line it starts on."""

    text: str
    line: int


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` after a blank, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in '\'"':
            quote = char
        elif char == '#' and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _logical_lines(lines: list[tuple[int, str]]) -> list[Command]:
    commands, pending, start = [], '', 0
    for number, raw in lines:
        text = strip_comment(raw).rstrip()
        if not pending:
            start = number
        if text.endswith('\\'):
            pending += text[:-1] + ' '
            continue
        joined = ' '.join((pending + text).split())
        pending = ''
        if joined:
            commands.append(Command(joined, start))
    if pending.strip():
        commands.append(Command(' '.join(pending.split()), start))
    return commands


def extract_commands(readme: str) -> list[Command]:
    """Every command of the README, in order (see the module docstring for what counts)."""
    commands: list[Command] = []
    lang: str | None = None  # None: outside a fenced block
    block: list[tuple[int, str]] = []
    for number, line in enumerate(readme.splitlines(), start=1):
        fence = line.strip()
        if fence.startswith('```'):
            if lang is None:
                lang, block = fence[3:].strip().lower(), []
                continue
            if lang in SHELL_LANGS:
                commands += _logical_lines(block)
            elif lang == '':
                commands += [c for c in _logical_lines(block) if COMMAND_START.match(c.text)]
            lang = None
            continue
        if lang is not None:
            block.append((number, line))
        else:
            commands += [Command(' '.join(m.group(1).split()), number) for m in INLINE_COMMAND.finditer(line)]
    return commands


@dataclass(frozen=True)
class SplitCommand:
    """A command as launcher tokens (``python -u``, ``torchrun ...``, ``srun ...``), tool script and its arguments."""

    launcher: list[str]
    script: str
    args: list[str]


def split_command(text: str) -> SplitCommand:
    """Split at the first ``tools/<name>.py`` token. Raises ValueError when the command runs no tool script."""
    tokens = shlex.split(text)
    for i, token in enumerate(tokens):
        if TOOL_SCRIPT.match(token):
            return SplitCommand(tokens[:i], token, tokens[i + 1 :])
    raise ValueError(f'no tools/<name>.py in {text!r}')


def repo_paths(args: list[str]) -> list[str]:
    """The repository files (``options/``, ``tools/``, ``tests/data/``) that the arguments name."""
    return [m.group(1) for arg in args for m in REPO_PATH.finditer(arg)]


class ParsedArguments(BaseException):
    """Raised by the patched ``ArgumentParser.parse_args`` once a tool's command line has parsed.

    A ``BaseException``: the tools' error handling (``run_cli``) passes it on instead of reporting it.
    """

    def __init__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> None:
        super().__init__(parser.prog)
        self.parser, self.namespace = parser, namespace


def parse_tool_arguments(script: Path, args: list[str], monkeypatch) -> ParsedArguments:
    """Run ``python <script> <args>`` in this process up to its first successful ``parse_args``, then stop.

    The script runs as ``__main__`` (as from the shell: its own entry point, error handling and argument
    parser); ``argparse.ArgumentParser.parse_args`` is patched to parse and then raise :class:`ParsedArguments`,
    so no work starts. A rejected argument ends in ``SystemExit`` (the tool's one-line error), which is
    re-raised as an AssertionError with the message.

    Args:
        script (Path): The tool script.
        args (list[str]): Its command-line arguments.
        monkeypatch: pytest's monkeypatch fixture (restores ``sys.argv``, ``sys.path`` and the parser).

    Returns:
        ParsedArguments: The parser and the namespace it produced.
    """
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, argv=None, namespace=None):
        raise ParsedArguments(self, original(self, argv, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', parse_then_stop)
    monkeypatch.setattr(sys, 'argv', [str(script), *args])
    monkeypatch.setattr(sys, 'path', [str(script.parent), *sys.path])
    try:
        runpy.run_path(str(script), run_name='__main__')
    except ParsedArguments as parsed:
        return parsed
    except SystemExit as exit_:
        raise AssertionError(f'{script.name} {shlex.join(args)}: exited with {exit_.code!r} while parsing') from None
    raise AssertionError(f'{script.name} {shlex.join(args)}: finished without parsing a command line')
