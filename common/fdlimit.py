"""The open-file limit: every held poll, on either side, is one socket.

Many systems start processes with a soft limit of 1024, which would cap a
server (or a fleet of simulated cameras) near 1,000 connections: past it every
``accept()`` or ``connect()`` fails.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Final

__all__ = ["OpenFileLimit", "hard_open_file_limit", "raise_open_file_limit"]

#: what "unlimited" counts as
UNLIMITED: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class OpenFileLimit:
    before: int
    now: int
    hard: int

    @property
    def raised(self) -> bool:
        return self.now > self.before


def hard_open_file_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return UNLIMITED if hard == resource.RLIM_INFINITY else hard


def raise_open_file_limit(wanted: int | None = None) -> OpenFileLimit:
    """Lift the soft limit to ``wanted`` (default: the hard limit), never past the hard one.

    A soft limit already high enough is left alone. ``setrlimit`` failing raises
    ``OSError`` or ``ValueError``; children started afterwards inherit the new limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard_open_file_limit()
    target = ceiling if wanted is None else min(wanted, ceiling)
    if soft == resource.RLIM_INFINITY or soft >= target:
        before = UNLIMITED if soft == resource.RLIM_INFINITY else soft
        return OpenFileLimit(before, before, ceiling)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return OpenFileLimit(soft, target, ceiling)
