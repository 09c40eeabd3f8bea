"""Turn a pytest-benchmark JSON file into ratio tables against each group's baseline.

Usage: ``python benchmarks/ratios.py results.json`` (from ``pytest ... --benchmark-json``).
In every group, the baseline is the first case whose test name matches ``--baseline``
(default: the bare stdlib path or the framework's bare predict); each case's median is
shown with its ratio to the baseline's median, both measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict

DEFAULT_BASELINE = r"^test_(baseline|bare_predict|bare_inplace|bare_inplace_with_missing|raw)\b"


def _fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds * 1e6:,.1f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument(
        "--stat", default="median", choices=("median", "min"), help="min resists a busy machine"
    )
    args = parser.parse_args()
    with open(args.json_file) as fh:
        data = json.load(fh)
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["group"] or ""].append(bench)
    pattern = re.compile(args.baseline)
    print(f"| group | case | {args.stat} | ratio to baseline |")
    print("|---|---|---:|---:|")
    for group, benches in groups.items():
        base = next((b for b in benches if pattern.search(b["name"])), None)
        for b in benches:
            median = b["stats"][args.stat]
            ratio = f"{median / base['stats'][args.stat]:.2f}x" if base else "-"
            marker = " (baseline)" if b is base else ""
            print(f"| {group} | `{b['name']}`{marker} | {_fmt(median)} | {ratio} |")


if __name__ == "__main__":
    main()
