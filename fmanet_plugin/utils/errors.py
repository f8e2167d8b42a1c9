"""One clear line for bad input: the tools' entry point and the project's error types.

Every tool ends with ``if __name__ == '__main__': run_cli(main)``. :func:`run_cli` runs ``main`` and turns the
project's expected errors (bad options, missing or damaged files, training stops; :data:`EXPECTED_ERRORS`) into

    error: <message>

on stderr and exit status 1, without a traceback. ``--debug`` on the command line or ``FMANET_DEBUG=1`` in the
environment re-raises instead (the full traceback). Errors raised in data-loader worker processes reach the
main process wrapped by torch (the worker's traceback inside the message): :func:`error_line` unwraps them to
the original message. Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from difflib import get_close_matches


class UserInputError(ValueError):
    """Bad input (an option, a file, a command-line argument); its message is the one line shown to the user."""


def _expected_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ValueError, KeyError, OSError, IndexError, subprocess.CalledProcessError]
    try:
        import yaml

        errors.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover
        pass
    with contextlib.suppress(ImportError):  # the BasicSR side works without mmengine
        from fmanet_plugin.train.training_error import TrainingError

        errors.append(TrainingError)
    return tuple(errors)


EXPECTED_ERRORS = _expected_errors()
"""Errors that mean bad input or an expected stop (ValueError, KeyError, OSError incl. FileNotFoundError,
IndexError, yaml errors, :class:`~fmanet_plugin.train.TrainingError`); mmengine's config errors are added by
:func:`is_expected`."""

_WORKER_TRACEBACK = 'Original Traceback (most recent call last):'
_TYPE_PREFIX = re.compile(r'^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Interrupt)): ?(.*)$')


def suggest(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``valid`` to ``name`` (difflib), or ``''``."""
    match = get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    return f' (did you mean {match[0]}?)' if match else ''


def check_keys(given: Iterable[str], valid: Iterable[str], where: str) -> None:
    """Raise a :class:`UserInputError` for the first of ``given`` not in ``valid``, suggesting the closest key.

    Args:
        given (Iterable[str]): The keys found (e.g. of one options section).
        valid (Iterable[str]): The keys that section accepts.
        where (str): The section, for the message (e.g. ``'datasets.train (VSRDBDataset)'``).
    """
    valid = sorted(set(valid))
    unknown = [k for k in given if k not in valid]
    if unknown:
        key = unknown[0]
        more = f' (and {len(unknown) - 1} more: {unknown[1:4]})' if len(unknown) > 1 else ''
        raise UserInputError(f'{where}: unknown option {key!r}{suggest(key, valid)}{more}')


def error_line(error: BaseException) -> str:
    """The one-line message of ``error``: the original message of a data-loader worker's error, the key of a
    ``KeyError`` without quotes, the last non-empty line of a multi-line message."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        text = error.args[0]
    else:
        text = str(error)
    if _WORKER_TRACEBACK in text:  # torch.utils.data's ExceptionWrapper: "Caught X in DataLoader worker ..."
        tail = text.split(_WORKER_TRACEBACK, 1)[1].strip().splitlines()
        for i in range(len(tail) - 1, -1, -1):
            match = _TYPE_PREFIX.match(tail[i])
            if match and not tail[i].startswith(' '):
                text = ' '.join([match.group(2), *tail[i + 1 :]]).strip()
                if match.group(1) == 'KeyError' and len(text) > 1 and text[0] == text[-1] and text[0] in '\'"':
                    text = text[1:-1]
                break
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) > 1:
        text = lines[-1]
    else:
        text = lines[0]
    return text


def is_expected(error: BaseException) -> bool:
    """Whether ``error`` is bad input or an expected stop (see :data:`EXPECTED_ERRORS`)."""
    if isinstance(error, EXPECTED_ERRORS):
        return True
    module = type(error).__module__ or ''
    return module.startswith('mmengine.config') or type(error).__name__ == 'ConfigParsingError'


def debug_requested(argv: list[str]) -> bool:
    """``--debug`` on the command line or ``FMANET_DEBUG`` set to something other than ``0``/empty."""
    return '--debug' in argv or os.environ.get('FMANET_DEBUG', '0') not in ('', '0')


class _ArgumentError(UserInputError):
    pass


@contextlib.contextmanager
def _argparse_errors_raise() -> Iterator[None]:
    """Within the block argparse's usage errors raise (one line) instead of printing the usage and exiting 2."""
    original = argparse.ArgumentParser.error

    def error(self: argparse.ArgumentParser, message: str) -> None:
        raise _ArgumentError(f'{self.prog}: {message} (see --help)')

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def run_cli(main: Callable[..., int | None], argv: list[str] | None = None, keep_debug_flag: bool = False) -> int:
    """Run a tool's ``main`` and exit: its return value (``None`` = 0), or 1 with ``error: <message>`` on stderr.

    Args:
        main (Callable): The tool's main; called with the argument list if it takes a parameter, otherwise
            with ``sys.argv`` set to it.
        argv (list[str] | None): The arguments. Default: ``sys.argv[1:]``.
        keep_debug_flag (bool): Pass ``--debug`` on to ``main`` (tools whose parser knows it); it is removed
            otherwise. Default: False.

    Returns:
        int: The exit status (the function exits when it is called as the entry point: see
        :func:`main_entry`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    if not keep_debug_flag:
        argv = [a for a in argv if a != '--debug']
    try:
        with _argparse_errors_raise():
            if inspect.signature(main).parameters:
                status = main(argv)
            else:
                saved = sys.argv
                sys.argv = [saved[0], *argv]
                try:
                    status = main()
                finally:
                    sys.argv = saved
    except SystemExit as exit_:
        if isinstance(exit_.code, str):  # sys.exit('message'): the message is the error line
            if debug:
                raise
            message = exit_.code.removeprefix('error: ')
            print(f'error: {message}', file=sys.stderr, flush=True)
            return 1
        return 0 if exit_.code is None else int(exit_.code)
    except BaseException as error:
        if debug or not is_expected(error):
            raise
        print(f'error: {error_line(error)}', file=sys.stderr, flush=True)
        return 1
    return status if isinstance(status, int) else 0


def main_entry(main: Callable[..., int | None], keep_debug_flag: bool = False) -> None:
    """``sys.exit(run_cli(main))``: the last line of every tool."""
    sys.exit(run_cli(main, keep_debug_flag=keep_debug_flag))
