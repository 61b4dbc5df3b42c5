"""Where each thing lives in Redis: every key name under one prefix.

``{prefix}:cam:{id}`` a camera's hash, ``{prefix}:parked:{id}`` work a stopping
home left for it, ``{prefix}:cams`` the ids for paging (a sorted set, all scores
0, so ``ZRANGEBYLEX`` pages by prefix and cursor), ``{prefix}:expiry`` the same
ids scored by the epoch ms at which their hash expires (what counts as live,
and which ids to forget), ``{prefix}:node:{incarnation}`` and ``{prefix}:nodes``
the heartbeats, ``{prefix}:epoch`` the store's epoch, ``{prefix}:inbox:{incarnation}``
each node's stream and ``{prefix}:body:{token}`` a big message body.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def camera(self, camera_id: str) -> str:
        return self._key("cam", camera_id)

    def parked(self, camera_id: str) -> str:
        return self._key("parked", camera_id)

    @property
    def cameras(self) -> str:
        return self._key("cams")

    @property
    def expiry(self) -> str:
        return self._key("expiry")

    def node(self, node: str) -> str:
        return self._key("node", node)

    @property
    def nodes(self) -> str:
        return self._key("nodes")

    @property
    def epoch(self) -> str:
        return self._key("epoch")

    def inbox(self, node: str) -> str:
        return self._key("inbox", node)

    def body(self, token: str) -> str:
        return self._key("body", token)
