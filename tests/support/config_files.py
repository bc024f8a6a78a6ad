"""Config dicts written as the TOML file `smsgw --config` reads."""

from __future__ import annotations

import tomllib
from typing import Any


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(raw: dict[str, Any]) -> str:
    """A config dict as TOML: [section] tables and [[array]] tables (what `smsgw --config` reads)."""
    lines: list[str] = []
    for section, values in raw.items():
        tables = values if isinstance(values, list) else [values]
        for table in tables:
            lines.append(f"[[{section}]]" if isinstance(values, list) else f"[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
            lines.append("")
    text = "\n".join(lines)
    assert tomllib.loads(text) == raw, "the TOML written must read back as the same config"
    return text
