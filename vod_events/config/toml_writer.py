"""Write TOML: the few shapes vod-events prints (the effective config, the example config).

The standard library reads TOML (`tomllib`) but does not write it. Supported: strings,
integers, floats, booleans, lists of those, tables of those, and arrays of tables — the
shapes of `config.masked()`. What this writes, `tomllib` reads back to equal data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# TOML basic-string escapes with a short form; other control characters become \\uXXXX.
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def value(item: Any) -> str:
    """One TOML value (the right-hand side of `key = value`)."""
    if isinstance(item, bool):  # before int: bool is an int
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        if math.isinf(item):
            return "inf" if item > 0 else "-inf"
        return repr(item)  # always has a '.' or an exponent: stays a float
    if isinstance(item, str):
        return _string(item)
    if isinstance(item, Sequence):
        return "[" + ", ".join(value(v) for v in item) + "]"
    raise TypeError(f"cannot write {type(item).__name__} as a TOML value")


def _string(text: str) -> str:
    out = []
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def key(name: str) -> str:
    """A key, quoted unless it is a bare key."""
    bare = name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else _string(name)


def dumps(data: Mapping[str, Any]) -> str:
    """A document whose top level holds scalars, tables and arrays of tables."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    lines += [f"{key(k)} = {value(v)}" for k, v in scalars.items()]
    for name, item in data.items():
        if _is_table(item):
            lines += ["", f"[{key(name)}]"]
            lines += [f"{key(k)} = {value(v)}" for k, v in item.items()]
        elif _is_table_array(item):
            for table in item:
                lines += ["", f"[[{key(name)}]]"]
                lines += [f"{key(k)} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table(item: Any) -> bool:
    return isinstance(item, Mapping)


def _is_table_array(item: Any) -> bool:
    return isinstance(item, list) and bool(item) and all(isinstance(t, Mapping) for t in item)
