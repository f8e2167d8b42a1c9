"""The package's import structure: every module imports on its own, and imports point one way only."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'fmanet_plugin'


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == '__init__.py'


def _imported_names(name: str) -> set[str]:
    """The modules that module ``name``'s import statements name (anywhere in the file, including
    ``TYPE_CHECKING`` blocks and function bodies): ``from a.b import c`` names ``a.b.c`` if that is a module
    of the package, else ``a.b``."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:  # relative: resolved against the importing module's package
                package = name if _is_package(name) else name.rpartition('.')[0]
                anchor = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                base = f'{anchor}.{base}' if base else anchor
            for alias in node.names:
                found.add(f'{base}.{alias.name}' if f'{base}.{alias.name}' in MODULES else base)
    return found - {name}


IMPORTS = {name: _imported_names(name) for name in MODULES}
GRAPH = {name: {m for m in imported if m in MODULES} for name, imported in IMPORTS.items()}
EXTERNAL = sorted({m for imported in IMPORTS.values() for m in imported if m.split('.')[0] != 'fmanet_plugin'})


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node: str) -> list[str] | None:
        state[node] = 'open'
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 'open':
                return stack[stack.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}) == ['a', 'b', 'c', 'a']
    assert _cycle({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) is None


def test_import_graph_has_no_cycle():
    """No module imports (directly or through others) a module that imports it back. A package's own
    ``__init__`` importing its submodules counts: a submodule importing from its package's ``__init__`` is a cycle."""
    assert _cycle(GRAPH) is None


def test_archs_and_ops_import_in_one_direction():
    """ops/ is model-agnostic (never imports archs/); the blocks, the networks and the configuration (the
    reference) never import the fast executor or the façade; the façade imports both sides."""
    archs = {m for m in MODULES if m.startswith('fmanet_plugin.archs.')}
    for name in (m for m in MODULES if m.startswith('fmanet_plugin.ops')):
        assert not GRAPH[name] & archs, name
    executor = {m for m in archs if m.startswith('fmanet_plugin.archs.fmanet_fast')}
    facade = 'fmanet_plugin.archs.fmanet_arch'
    for name in ('fmanet_config', 'fmanet_blocks', 'fmanet_nets'):
        assert not GRAPH[f'fmanet_plugin.archs.{name}'] & (executor | {facade}), name
    assert {'fmanet_plugin.archs.fmanet_nets', 'fmanet_plugin.archs.fmanet_fast'} <= GRAPH[facade]


# Runs in a fresh interpreter: imports the modules outside the package that the package imports (argv[2], a JSON
# list) once, then imports each package module of argv[3] (JSON) in its own forked child (one per CPU at a time), its
# parent packages stubbed (their ``__init__`` not run), so that the module's own import statements are the first
# package code to run.
_ISOLATED_IMPORTS = r"""
import importlib, importlib.machinery, json, os, runpy, sys, traceback, types

root, external, names = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
runpy.run_path(os.path.join(root, 'fmanet_plugin', 'compat.py'))  # the torchvision shim basicsr needs
for dependency in external:
    try:
        importlib.import_module(dependency)
    except ImportError:  # optional, or an attribute named by `from a import b`: the child imports it
        pass
assert not any(m == 'fmanet_plugin' or m.startswith('fmanet_plugin.') for m in sys.modules)


def import_alone(name):
    parts = name.split('.')
    for i in range(1, len(parts)):
        parent = '.'.join(parts[:i])
        stub = types.ModuleType(parent)
        stub.__path__ = [os.path.join(root, *parts[:i])]
        stub.__spec__ = importlib.machinery.ModuleSpec(parent, None, is_package=True)
        sys.modules[parent] = stub
    importlib.import_module(name)


failed, running, pending = [], {}, list(names)
while pending or running:
    if pending and len(running) < (os.cpu_count() or 1):
        name = pending.pop(0)
        pid = os.fork()
        if pid == 0:
            try:
                import_alone(name)
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
                os._exit(1)
            os._exit(0)
        running[pid] = name
        continue
    pid, status = os.wait()
    if status != 0:
        failed.append(running[pid])
    del running[pid]
print('failed:', ' '.join(sorted(failed)))
sys.exit(1 if failed else 0)
"""


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_every_module_imports_in_isolation():
    """Each module imports with nothing of the package loaded before it: a module that only works when
    something else was imported first (e.g. the half-initialised partner of an import cycle) fails here."""
    proc = subprocess.run(
        [sys.executable, '-c', _ISOLATED_IMPORTS, str(ROOT), json.dumps(EXTERNAL), json.dumps(list(MODULES))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
