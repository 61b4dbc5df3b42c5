"""A least-squares line through measured points: the per-unit cost and the fixed part."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Line", "fit"]


@dataclass(frozen=True, slots=True)
class Line:
    """``y = slope * x + intercept``; ``r2`` near 1: the points lie on it."""

    slope: float
    intercept: float
    r2: float


def fit(xs: Sequence[float], ys: Sequence[float]) -> Line:
    """The least-squares line through ``(xs[i], ys[i])`` (at least two distinct ``xs``)."""
    n = len(xs)
    if n != len(ys) or n < 2:
        raise ValueError("a line needs at least two points")
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a line needs two distinct x")
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = mean_y - slope * mean_x
    syy = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - slope * x - intercept) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 - residual / syy if syy > 0 else (1.0 if residual == 0 else math.nan)
    return Line(slope, intercept, r2)
