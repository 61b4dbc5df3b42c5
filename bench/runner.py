"""Runs the chosen scenarios one after another; a crash or overrun becomes an error."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Sequence

from bench.plan import Context
from bench.result import ScenarioResult
from bench.scenarios import SCENARIOS

__all__ = ["run_all"]


async def run_one(ctx: Context, name: str) -> ScenarioResult:
    started = time.perf_counter()
    scenario = SCENARIOS[name]
    limit = scenario.timeout(ctx.plan)
    try:
        async with asyncio.timeout(limit):
            result = await scenario(ctx)
    except TimeoutError:
        result = ScenarioResult(name)
        result.error(f"did not finish within {limit:g} s")
    except Exception as error:
        result = ScenarioResult(name)
        result.error(f"crashed: {type(error).__name__}: {error}")
        result.notes.append(traceback.format_exc().strip().splitlines()[-1])
    result.seconds = time.perf_counter() - started
    return result


async def run_all(
    ctx: Context, names: Sequence[str], *, verbose: bool = True
) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    for name in names:
        if verbose:
            print(f"bench: {name} ...", flush=True)
        result = await run_one(ctx, name)
        if verbose:
            verdicts = ", ".join(
                f"{t.name} {t.value:g}{t.unit} ({'met' if t.met else 'MISSED'})"
                for t in result.targets
            )
            print(
                f"bench: {name} done in {result.seconds:.1f} s, "
                f"{result.error_count} errors; {verdicts}",
                flush=True,
            )
        results.append(result)
    return results
