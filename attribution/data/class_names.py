"""Class names by model class index: position ``i`` names class ``i``.

Captions (reports, drift tables) look a class up by its index in this list, so it must be indexed
by the *model's* class index, not by position in a sorted folder list. A ``class_names`` file
overrides the names a dataset derives from its folders or class index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path


def names_by_index(index: Mapping[str, int], names: Mapping[str, str] | None = None) -> list[str]:
    """``key -> class index`` inverted: ``names[key]`` (else the key) at each index, ``str(i)`` for an
    index no key maps to; keys sharing an index are joined with `` / ``. Length ``max index + 1``."""
    names = names or {}
    by_index: dict[int, list[str]] = {}
    for key in sorted(index):
        by_index.setdefault(int(index[key]), []).append(names.get(key) or key)
    return [" / ".join(by_index.get(i, [str(i)])) for i in range(max(index.values(), default=-1) + 1)]


def read_class_names(source: str | Path | list[str]) -> list[str]:
    """Names from a list or a file: text (line ``i`` names class ``i``; a blank line is named by its
    index), a JSON list of names, or Keras' ``imagenet_class_index.json`` (``{"0": ["n01440764",
    "tench"], ...}``: the human name) / ``{"0": "tench"}``. Raises ValueError naming the file."""
    if isinstance(source, list):
        return [str(n) for n in source]
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"class_names {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix.lower() != ".json":
        lines = text.rstrip("\n").splitlines()
        return [line.strip() or str(i) for i, line in enumerate(lines)]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"class_names {path} is not JSON: {exc}") from None
    if isinstance(data, list):
        return [str(n) for n in data]
    if isinstance(data, dict):
        try:
            named = {int(k): v[-1] if isinstance(v, list) else v for k, v in data.items()}
        except (ValueError, IndexError) as exc:
            raise ValueError(f"class_names {path}: keys must be class indices ('0', '1', ...): {exc}") from None
        if any(i < 0 for i in named):
            raise ValueError(f"class_names {path}: class indices must be >= 0")
        return [str(named.get(i, i)) for i in range(max(named, default=-1) + 1)]
    raise ValueError(f"class_names {path} must be a JSON list of names or an object {{'0': name or [id, name]}}")


def with_class_names(derived: list[str], override: str | Path | list[str] | None, where: str) -> list[str]:
    """``derived`` names, or the ``override``'s when given: these must name every class the dataset
    labels with (at least ``len(derived)`` names)."""
    if override is None:
        return derived
    names = read_class_names(override)
    if len(names) < len(derived):
        raise ValueError(
            f"class_names {override if not isinstance(override, list) else '(list)'} has {len(names)} names, "
            f"but {where} uses class indices up to {len(derived) - 1}"
        )
    return names
