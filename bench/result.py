"""What a scenario reports: figures, targets met or missed, errors, notes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Figure", "ScenarioResult", "Target"]

Figure = float | int | str | bool
Comparison = Literal["<=", "<", ">="]


@dataclass(frozen=True, slots=True)
class Target:
    """``value <comparison> limit``; ``unit`` is for display only."""

    name: str
    value: float
    comparison: Comparison
    limit: float
    unit: str = ""

    @property
    def met(self) -> bool:
        if math.isnan(self.value):
            return False
        if self.comparison == "<=":
            return self.value <= self.limit
        if self.comparison == "<":
            return self.value < self.limit
        return self.value >= self.limit

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value if math.isfinite(self.value) else str(self.value),
            "comparison": self.comparison,
            "limit": self.limit,
            "unit": self.unit,
            "met": self.met,
        }


@dataclass(slots=True)
class ScenarioResult:
    """Built up by a scenario as it measures; ``errors`` are failures, not missed targets."""

    name: str
    figures: dict[str, Figure] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    #: failure message -> how many times it happened
    errors: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def figure(self, name: str, value: Figure) -> None:
        self.figures[name] = value

    def target(
        self, name: str, value: float, comparison: Comparison, limit: float, unit: str = ""
    ) -> None:
        self.targets.append(Target(name, value, comparison, limit, unit))

    def error(self, message: str) -> None:
        self.errors[message] = self.errors.get(message, 0) + 1

    def errors_from(self, source: str, messages: Iterable[str]) -> None:
        for message in messages:
            self.error(f"{source}: {message}")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, object]:
        return {
            "figures": {
                k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                for k, v in self.figures.items()
            },
            "targets": [target.to_json() for target in self.targets],
            "error_count": self.error_count,
            "errors": [{"message": m, "count": n} for m, n in self.errors.items()],
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }
