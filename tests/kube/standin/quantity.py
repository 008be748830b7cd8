"""Kubernetes resource quantities (`500m`, `1.5`, `16Gi`, `1e9`) as exact numbers."""

import math
import re
from fractions import Fraction

_BINARY = {'Ki': 2**10, 'Mi': 2**20, 'Gi': 2**30, 'Ti': 2**40, 'Pi': 2**50, 'Ei': 2**60}
_DECIMAL = {'n': Fraction(1, 10**9), 'u': Fraction(1, 10**6), 'm': Fraction(1, 1000), '': 1,
            'k': 10**3, 'M': 10**6, 'G': 10**9, 'T': 10**12, 'P': 10**15, 'E': 10**18}
_QUANTITY = re.compile(r'^([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$')


def parse(text):
    """The exact value of a quantity; ValueError when it is not one."""
    if isinstance(text, (int, float)):
        return Fraction(text)
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f'quantities must match the regular expression '
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {text!r})")
    number = Fraction(match.group(1))
    if match.group(2):
        return number * Fraction(10) ** int(match.group(2)[1:])
    suffix = match.group(3) or ''
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def milli(text):
    """A quantity in thousandths, rounded up (CPU in millicores)."""
    return math.ceil(parse(text) * 1000)


def whole(text):
    """A quantity rounded up to a whole number (bytes, devices, pods)."""
    return math.ceil(parse(text))


def amount(resource, text):
    """The scheduler's integer for a resource: millicores for cpu, whole units otherwise."""
    return milli(text) if resource == 'cpu' else whole(text)


def format_amount(resource, value):
    if resource == 'cpu':
        return f'{value // 1000}' if value % 1000 == 0 else f'{value}m'
    return str(value)
