"""Who a node is: its name (``NODE_NAME``, stable across restarts) and its incarnation.

An incarnation (``name~token``) names one run of a node: a node restarted
under the same name is a new incarnation. Homes, heartbeats and message
addresses name incarnations; a node's inbox is named by its name, and a
message read there that is addressed to another incarnation is dropped, so
nothing sent to an earlier run reaches this one. Callers are named by refs
(``incarnation/serial``) that no other run can issue.
"""

from __future__ import annotations

import itertools
import secrets

SEPARATOR = "~"


def new_incarnation(name: str) -> str:
    return f"{name}{SEPARATOR}{secrets.token_hex(6)}"


def name_of(incarnation: str) -> str:
    """The node name of an incarnation (a name of the release before has no token)."""
    return incarnation.partition(SEPARATOR)[0]


def node_of(ref: str) -> str:
    """The incarnation that issued ``ref``."""
    return ref.rpartition("/")[0]


class Refs:
    """Issues this incarnation's refs: ``incarnation/1``, ``incarnation/2``, ..."""

    def __init__(self, incarnation: str) -> None:
        self._prefix = f"{incarnation}/"
        self._serials = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._serials)}"

    def issued(self, ref: str) -> bool:
        return ref.startswith(self._prefix)
