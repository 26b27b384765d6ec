"""Credentials in ``store.storage_options``: kept out of everything that is written down.

A config may hold credentials literally (``secret: abc``) or, better, as a reference to an
environment variable (``secret: ${AWS_SECRET_ACCESS_KEY}``) that is looked up only where the
store is opened (:func:`resolved`). Best of all is no credential in the config at all: fsspec's
backends read the environment's credential chain (``AWS_*`` variables, instance roles, ``~/.aws``).

Whatever the config holds, :func:`redacted` is what the store's provenance, the report, logs and
Prefect's flow-run parameters see: values under secret-looking keys are replaced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
# key, secret, token, password, credential(s), session token, signatures, SAS and connection
# strings (an Azure connection string holds the account key) -- matched anywhere in the key
_SECRET_KEY = re.compile(r"key|secret|token|passw|credential|session|signature|sas|connection|auth", re.IGNORECASE)
_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def is_secret_key(name: str) -> bool:
    """Whether a storage option called ``name`` may hold a credential."""
    return bool(_SECRET_KEY.search(name))


def redacted(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every value under a secret-looking key replaced by ``<redacted>``
    (nested mappings such as ``client_kwargs`` too); ``${VAR}`` references are kept, they name
    a variable, not its value."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, Mapping):
            out[name] = redacted(value)
        elif is_secret_key(str(name)) and value is not None and not _is_reference(value):
            out[name] = REDACTED
        else:
            out[name] = value
    return out


def resolved(options: Mapping[str, Any] | None, where: str = "store.storage_options") -> dict[str, Any]:
    """``options`` with each ``${VAR}`` value replaced by the environment variable ``VAR``; a
    variable that is not set is an error naming it and the option."""
    out: dict[str, Any] = {}
    for name, value in (options or {}).items():
        if isinstance(value, Mapping):
            out[name] = resolved(value, f"{where}.{name}")
        elif isinstance(value, str) and (match := _REFERENCE.match(value)):
            variable = match.group(1)
            if variable not in os.environ:
                raise ValueError(f"{where}.{name} refers to the environment variable {variable}, which is not set")
            out[name] = os.environ[variable]
        else:
            out[name] = value
    return out


def literal_secrets(options: Mapping[str, Any], where: str = "store.storage_options") -> list[str]:
    """The config keys that hold a credential literally (not a ``${VAR}`` reference)."""
    found = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            found += literal_secrets(value, f"{where}.{name}")
        elif is_secret_key(str(name)) and value is not None and not _is_reference(value):
            found.append(f"{where}.{name}")
    return found


def redacted_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run config (a JSON-ready dict) with its storage options redacted."""
    out = dict(config)
    store = out.get("store")
    if isinstance(store, Mapping) and isinstance(store.get("storage_options"), Mapping):
        out["store"] = {**store, "storage_options": redacted(store["storage_options"])}
    return out


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) and bool(_REFERENCE.match(value))
