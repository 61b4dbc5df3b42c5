"""What a scenario is: its own parameters at full size and for ``--quick``, and what it gets.

Each module under bench/scenarios/ owns its parameters: a frozen dataclass, a
``FULL`` and a ``QUICK`` instance of it, and a ``SCENARIO = Scenario(NAME, run,
FULL, QUICK)`` that the registry (bench/scenarios/__init__.py) lists. The plan
(full or quick) picks which of the two a run gets, and bounds each scenario's time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from bench.result import ScenarioResult

__all__ = ["FULL", "QUICK", "Context", "Plan", "Scenario"]


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole run's size: ``full`` (the default) or ``quick`` (``--quick``, the tests)."""

    name: str
    #: a scenario that runs longer than this is stopped and reported as an error
    scenario_timeout_seconds: float

    @property
    def quick(self) -> bool:
        return self.name == "quick"


FULL = Plan(name="full", scenario_timeout_seconds=300.0)
QUICK = Plan(name="quick", scenario_timeout_seconds=60.0)


@dataclass(frozen=True, slots=True)
class Context:
    """What every scenario gets: the plan, a scratch folder, where to put profiles."""

    plan: Plan
    workdir: Path
    profile_dir: Path | None = None


P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Scenario(Generic[P]):
    """A scenario's name, its ``run(ctx, params)``, and its parameters for each plan."""

    name: str
    run: Callable[[Context, P], Awaitable[ScenarioResult]]
    full: P
    quick: P
    #: the full run's time limit when it needs more than the plan's
    full_timeout_seconds: float | None = None

    def params(self, plan: Plan) -> P:
        return self.quick if plan.quick else self.full

    def timeout(self, plan: Plan) -> float:
        if plan.quick or self.full_timeout_seconds is None:
            return plan.scenario_timeout_seconds
        return self.full_timeout_seconds

    async def __call__(self, ctx: Context) -> ScenarioResult:
        return await self.run(ctx, self.params(ctx.plan))
