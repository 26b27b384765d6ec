"""sha256 of every map and score array of a run store (of the decoded values), to show that two runs
produced bitwise-identical results (e.g. the demo before and after a change).

    .venv/bin/python -m benchmarks.store_digest runs/demo/store.zarr [other/store.zarr]

With two stores it prints both digests side by side and whether each array is the same.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np

from pathatlas.attribution.run.store import RunStore


def digests(uri: str) -> dict[str, str]:
    """``"maps/<key>"`` and ``"scores/<metric>/<key>/<output>"`` -> sha256 of the array's bytes."""
    store = RunStore.open(uri, mode="r")
    out = {f"maps/{key}": _sha(store.maps(key)) for key in store.method_keys()}
    for metric in store.metric_names():
        for key in store.scored_keys(metric):
            for name, values in store.score_values(metric, key).items():  # any store version
                out[f"scores/{metric}/{key}/{name}"] = _sha(values)
    return out


def _sha(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+", help="one or two store paths or URLs")
    args = parser.parse_args()
    tables = [digests(uri) for uri in args.stores[:2]]
    names = sorted(set().union(*tables))
    for name in names:
        row = [t.get(name, "-" * 64) for t in tables]
        same = "" if len(tables) == 1 else ("  same" if len(set(row)) == 1 else "  DIFFERENT")
        print(f"{name:60s} " + " ".join(row) + same)
    if len(tables) == 2:
        differ = sum(len({t.get(n) for t in tables}) > 1 for n in names)
        print(f"{len(names)} arrays, {differ} different")


if __name__ == "__main__":
    main()
