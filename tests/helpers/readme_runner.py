"""Run README commands one after another in this process, as ``python tools/<name>.py ...`` would.

Usage: ``python readme_runner.py STEPS.json RESULTS.json`` in the folder the commands run in. STEPS.json is a list
of ``{"script": path, "args": [...]}``; each script runs as ``__main__`` with ``sys.argv`` and ``sys.path[0]`` set
as the interpreter sets them, so only the interpreter start-up (importing torch, basicsr and the plugin: seconds
on a small CPU) is shared between the commands. RESULTS.json gets, per step, the exit status (the ``SystemExit``
code; ``"exception"`` for an uncaught exception, whose traceback goes to stderr), its start (``time.time()``)
and the seconds it took. Each step is announced on stdout (``=== step N: ...``) so that a log of stdout and stderr
together can be read per command.
"""

from __future__ import annotations

import json
import runpy
import shlex
import sys
import time
import traceback
from pathlib import Path


def run_step(script: str, args: list[str]) -> int | str:
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [script, *args]
    sys.path[0] = str(Path(script).parent)
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as exit_:
        code = exit_.code
        return 0 if code is None else code if isinstance(code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 'exception'
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def main() -> None:
    steps = json.loads(Path(sys.argv[1]).read_text())
    results = []
    for number, step in enumerate(steps):
        banner = f'=== step {number}: {shlex.join([step["script"], *step["args"]])}'
        sys.stderr.flush()
        print(banner, flush=True)
        start, tic = time.time(), time.perf_counter()
        status = run_step(step['script'], step['args'])
        results.append({'status': status, 'start': start, 'seconds': round(time.perf_counter() - tic, 2)})
        Path(sys.argv[2]).write_text(json.dumps(results))  # what finished survives a later crash
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == '__main__':
    main()
