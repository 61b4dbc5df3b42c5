"""Cluster mode: how a request crosses nodes (``REDIS_URL`` set).

The story, in the order a reader meets it:

**One seam.** A node is a ``ClusterNode`` (``node``): the same
``RelayService`` the HTTP layer calls in one process. It composes a local
``Relay`` from the framework-free core and talks to the other nodes only
through a ``Backend`` (``backend``): a ``Directory`` of homes and status, ``Members``
for heartbeats and the store's epoch, and a ``Transport`` of messages. The
Redis backend is ``server.cluster.redis``; ``server.cluster.memory`` runs
several nodes in one event loop (tests, and the fault simulation).

**Who is who.** Each run of a node is an *incarnation* (``identity``): homes,
heartbeats and message addresses name incarnations, and callers are named by
refs that only their incarnation issues. A message addressed to an earlier
run of a node is dropped on arrival, and an outcome is taken only for a
caller of the camera it names: nothing crosses between cameras or runs.

**A camera has a home** (``homes``): the incarnation that holds (or last held)
its poll, which runs the camera's session unchanged: queue, coalescing,
in-flight commands, redelivery and timers. A poll elsewhere claims the camera
in the store; claims are numbered in an order that survives the store losing
its data, the old home hands the session's work over (``Takeover`` then
``Handover``), and a takeover older than a node's latest claim, or than the
poll it holds, is ignored, so the newest poll wins. A poll at the camera's
home costs the store nothing.

**Callers stay where they are** (``waiters``): a ``/logs`` request lives on
the node its connection reached; its work goes to the camera's home
(``Enqueue``), which queues it beside its own callers (``hosted``), so
coalescing, arrival order and ``MAX_WAITING_PER_CAMERA`` span the cluster.
The result goes back as the camera's bytes (``Outcome``; one message per node
and result). A node sends to itself the same way, without the store.

**A result anywhere** (``forwarding``): a ``/send_logs`` at another node is
read and checked there, forwarded to the home (``Posted``), and the home's
``ResultReceipt`` is the camera's answer.

**The fleet** (``fleet``): a home writes its cameras' status to the store in
batches every 100 ms, only what changed (``written``), and refreshes each
entry every few minutes; ``/cameras`` reads it from there.

**Faults.** Nodes beat four times per ``NODE_TIMEOUT_SECONDS``
(``membership``). Callers whose work sat at a node that stopped beating are
placed again once the camera polls a live node, or get 503 within
``CONNECT_TIMEOUT_SECONDS`` of the death being seen. A node whose own
membership lapsed (paused, cut off) checks which of its cameras others
claimed meanwhile before it serves them again; a status write that finds a
later claim by another node gives the camera up the same way; a new store
epoch (the store lost its data) makes a node forget the claim order it
remembers and register its cameras again. A node that stops gracefully
parks its cameras' work in the store for their next home. While the store is
away, a camera's home keeps serving the callers on its own node; anything
that must cross gets 503 with Retry-After (``ClusterUnavailable``), and a
caller whose outcome was lost between nodes gets it at its deadline, never a
504 that blames a camera which answered.
"""

from .backend import Backend, BackendError, StoreLimits
from .context import ClusterConfig
from .node import ClusterNode
from .observer import ClusterObserver
from .unavailable import ClusterUnavailable

__all__ = [
    "Backend",
    "BackendError",
    "ClusterConfig",
    "ClusterNode",
    "ClusterObserver",
    "ClusterUnavailable",
    "StoreLimits",
]
