"""Where each thing lives in Redis: every key name under one prefix, hash-tagged so that
each Lua script touches one slot of a Redis Cluster.

The fleet is spread over ``SHARDS`` shards, a camera's shard being a hash of its id.
Shard ``k``'s keys share the tag ``{prefix:s:k}`` (one slot): ``{prefix:s:k}:entries``
a hash of each camera's entry (field: its id), ``{prefix:s:k}:ids`` the shard's ids
for paging (a sorted set, all scores 0, so ``ZRANGEBYLEX`` pages by prefix and
cursor), ``{prefix:s:k}:due`` the ids whose poll is not held, scored by the epoch
ms at which their entry expires (which ids to forget), ``{prefix:s:k}:sweep`` where
the scan for expired entries of held polls stands, ``{prefix:s:k}:parked:{id}`` work a
stopping home left for a camera and ``{prefix:s:k}:epoch`` the shard's epoch (a token
that changes when the shard's primary loses its data). A camera's entry, its parked
work and its shard's indexes are one slot: each script about a camera is atomic
there. No key is written by every camera, and no camera has a key of its own (a key
costs Redis more than the entry in it): each shard's keys hold about 1/SHARDS of the
fleet.

``{prefix:m}:node:{incarnation}`` and ``{prefix:m}:nodes`` the heartbeats (one slot:
a beat is one round trip), ``{prefix:inbox:{incarnation}}`` each node's stream (a
slot of its own: the reader's blocking ``XREAD`` goes to the primary holding it) and
``{prefix}:body:{token}`` a big message body.

The same layout serves a single Redis (where the tags mean nothing): one code path.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

#: shards of the fleet index: enough to spread over the primaries of a big cluster,
#: few enough that a ``/cameras`` page merges them cheaply
SHARDS = 16


def shard_of(camera_id: str) -> int:
    return zlib.crc32(camera_id.encode()) % SHARDS


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def shard_tag(self, shard: int) -> str:
        return f"{{{self.prefix}:s:{shard}}}"

    def entries(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:entries"

    def parked(self, camera_id: str) -> str:
        return f"{self.shard_tag(shard_of(camera_id))}:parked:{camera_id}"

    def ids(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:ids"

    def due(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:due"

    def sweep(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:sweep"

    def epoch(self, shard: int) -> str:
        return f"{self.shard_tag(shard)}:epoch"

    @property
    def _members(self) -> str:
        return f"{{{self.prefix}:m}}"

    def node(self, node: str) -> str:
        return f"{self._members}:node:{node}"

    @property
    def nodes(self) -> str:
        return f"{self._members}:nodes"

    def inbox(self, node: str) -> str:
        return f"{{{self.prefix}:inbox:{node}}}"

    def body(self, token: str) -> str:
        return self._key("body", token)
