"""Checking mmengine configs before the Runner builds them: unknown keys of the plugin's components, and
``--cfg-options`` values that keep clip names as text.

mmengine passes a config dict's keys to the class as keyword arguments, so a typo ends in a ``TypeError`` deep
in the Runner's build (a traceback of hundreds of lines). :func:`check_plugin_config` walks the config and, for
every ``type='fmanet_plugin.<Name>'``, checks the keys against the arguments the class accepts
(:func:`~fmanet_plugin.utils.options.accepted_arguments`), and ``FMANetRestorer``'s ``losses`` against the loss
terms, raising one line with the closest valid key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fmanet_plugin.losses.fmanet_loss import LOSS_OPTION_KEYS
from fmanet_plugin.mm.registry import DATASETS, METRICS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, SCOPE, TRANSFORMS
from fmanet_plugin.utils.errors import UserInputError, check_keys, suggest
from fmanet_plugin.utils.options import check_arguments

from mmengine.config import DictAction

_REGISTRIES = (MODELS, DATASETS, TRANSFORMS, METRICS, OPTIM_WRAPPER_CONSTRUCTORS)


def _plugin_class(type_name: str, where: str) -> type:
    name = type_name.split('.', 1)[1]
    for registry in _REGISTRIES:
        if name in registry.module_dict:
            return registry.module_dict[name]
    known = sorted({n for registry in _REGISTRIES for n in registry.module_dict})
    raise UserInputError(f'{where}: {type_name!r} is not a component of {SCOPE}{suggest(name, known)}')


def check_plugin_config(tree: Any, where: str = 'config') -> None:
    """Raise a :class:`UserInputError` for an unknown key of any ``fmanet_plugin.*`` component in ``tree``."""
    if isinstance(tree, Mapping):
        type_name = tree.get('type')
        if isinstance(type_name, str) and type_name.startswith(f'{SCOPE}.'):
            cls = _plugin_class(type_name, where)
            check_arguments(tree, cls, f'{where} ({type_name})')
            if cls.__name__ == 'FMANetRestorer' and isinstance(tree.get('losses'), Mapping):
                check_keys(tree['losses'], LOSS_OPTION_KEYS, f'{where}.losses')
        for key, value in tree.items():
            check_plugin_config(value, f'{where}.{key}' if where != 'config' else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            check_plugin_config(value, f'{where}[{i}]')


def parse_cfg_value(text: str) -> Any:
    """A ``--cfg-options`` value: as mmengine's ``DictAction``, except that quoted items stay strings without
    their quotes and integers written with leading zeros stay strings (clip names such as ``000``; the shell has
    already removed the quotes of an unquoted ``clips=['000']``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
        return text[1:-1]
    brackets = {'[': ']', '(': ')'}
    if text[:1] in brackets and text.endswith(brackets[text[0]]):
        items = [parse_cfg_value(item) for item in _split_top_level(text[1:-1])]
        return tuple(items) if text[0] == '(' else items
    if ',' in text:
        return [parse_cfg_value(item) for item in _split_top_level(text)]
    digits = text.lstrip('+-')
    if len(digits) > 1 and digits.isdigit() and digits.startswith('0'):
        return text
    return DictAction._parse_int_float_bool(text)


def _split_top_level(text: str) -> list[str]:
    items, depth, quote, start = [], 0, '', 0
    for i, char in enumerate(text):
        if quote:
            quote = '' if char == quote else quote
        elif char in '\'"':
            quote = char
        elif char in '[(':
            depth += 1
        elif char in '])':
            depth -= 1
        elif char == ',' and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if text[start:].strip():
        items.append(text[start:])
    return items


class CfgOptionsAction(DictAction):
    """``--cfg-options key=value ...`` parsed with :func:`parse_cfg_value` (clip names stay strings)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        options = dict(getattr(namespace, self.dest, None) or {})
        for pair in values if isinstance(values, list) else [values]:
            key, sep, value = pair.partition('=')
            if not sep:
                raise UserInputError(f'--cfg-options: expected key=value, got {pair!r}')
            options[key] = parse_cfg_value(value)
        setattr(namespace, self.dest, options)
