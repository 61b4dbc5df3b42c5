"""Hooks the cluster layer calls on events worth counting (``server.observe.metrics`` plugs in)."""

from __future__ import annotations


class ClusterObserver:
    """Observes nothing: subclasses override what they need."""

    def forwarded(self, kind: str) -> None:
        """A message of ``kind`` was sent to another node (enqueue, result, posted...)."""

    def home_found(self, source: str) -> None:
        """A caller's camera's home was found, in the store or among the homes known here."""

    def hop_latency(self, seconds: float) -> None:
        """A message arrived ``seconds`` after it was sent."""

    def redis_error(self) -> None:
        """A Redis command failed."""
