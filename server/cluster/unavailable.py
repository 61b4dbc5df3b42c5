"""The one error cluster mode adds: work that must cross nodes while it cannot."""

from __future__ import annotations

from ..relay import RelayError


class ClusterUnavailable(RelayError):
    """Redis or the node holding the camera cannot be reached now (503, Retry-After)."""
