"""``python -m bench [--quick] [--only NAME ...] [--out FILE] [--profile DIR]``.

Runs every scenario (or the ones named), prints a table and writes JSON
(``bench/results/latest.json``; ``--quick`` writes ``bench/results/quick.json``).
Exit status: 0 when no scenario reported an error (missed targets are
reported, not failed on, unless ``--strict``), 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.plan import FULL, QUICK, Context
from bench.report import describe, machine, table, write_json
from bench.result import ScenarioResult
from bench.runner import run_all
from bench.scenarios import SCENARIOS
from common.fdlimit import raise_open_file_limit
from tools.procs import REPO

__all__ = ["main", "run"]

RESULTS = REPO / "bench" / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a small version of every scenario")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the server with py-spy during latency and burst; write to DIR",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed too")
    return parser


async def run(
    quick: bool,
    names: Sequence[str],
    out: Path,
    profile_dir: Path | None = None,
    *,
    verbose: bool = True,
) -> list[ScenarioResult]:
    """Run ``names`` and write ``out``; the in-process entry the test suite may use."""
    limit = raise_open_file_limit()
    if verbose:
        change = "raised" if limit.raised else "already at"
        print(
            f"bench: fd soft limit {change} {limit.now} (was {limit.before}; hard "
            f"{limit.hard}); the server and cameras inherit it",
            flush=True,
        )
    plan = QUICK if quick else FULL
    host = machine()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="camrelay-bench-") as workdir:
        ctx = Context(plan, Path(workdir), profile_dir)
        results = await run_all(ctx, names, verbose=verbose)
    seconds = time.perf_counter() - started
    host["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json(out, plan.name, seconds, host, results)
    if verbose:
        print()
        print(describe(host))
        print(table(results))
        print(
            f"\nbench: {plan.name} run took {seconds:.0f} s on {host['revision']}; results in {out}"
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = args.only or list(SCENARIOS)
    out = args.out or RESULTS / ("quick.json" if args.quick else "latest.json")
    results = asyncio.run(run(args.quick, names, out, args.profile))
    if any(r.error_count for r in results):
        return 1
    if args.strict and any(not t.met for r in results for t in r.targets):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
