"""Cluster mode: how a request crosses nodes (``REDIS_URL`` set).

The story, in the order a reader meets it:

**A camera has a home.** The home is the node that holds (or last held) the
camera's poll. It runs the camera's ``CameraSession`` from the framework-free
core (``server.relay``) unchanged: queue, coalescing, in-flight commands,
redelivery and timers. A camera and a caller on the same node therefore never
wait on Redis. Which node is home is written in Redis (``registry``), with the
camera's status for ``/cameras``; the home writes status changes in batches
every 100 ms, its claim and a delivered command at once.

**Callers stay where they are.** A ``/logs`` request lives on the node its
connection reached. If that node is the camera's home, the caller is queued in
the session directly. Otherwise its work (a ``ref`` naming node and caller, the
range, the seconds left to be picked up) goes to the home's inbox as an
``enqueue`` message; the home queues it in the same session as its own
callers, so coalescing, arrival order and ``MAX_WAITING_PER_CAMERA`` span the
cluster. When the command's result comes, the home sends one ``outcome``
message per node with the result's bytes (beside the message when small, as a
key with a TTL when big) and the refs it serves; each node slices it for its
callers. An error (503, 504) travels the same way. A caller that leaves sends
``forget``.

**A poll elsewhere moves the home.** A poll reaching a node that is not the
home claims the camera in Redis (atomically: the old home comes back). The new
home sends ``takeover``; the old one answers its held poll 409 (newest poll
wins), exports the session's work (``CameraSession.export_work``: queued
callers, unanswered commands with their request ids, recently accepted ids)
and sends it in a ``handover``; the new home imports it and only then hands
work to the poll, so an unanswered command is redelivered with the same
request id. Callers are told where their work went (``moved``). Redis numbers
the claims of a camera; a poll at the home claims it again (in the background),
and a takeover carries its claim's number: a node ignores one older than its
own latest claim, so the newest poll wins even when a camera bounces between
nodes faster than the messages travel.

**A result anywhere.** A ``/send_logs`` on a node that is not the home is read
and checked there, then forwarded (``posted``) to the home, whose ``receipt``
(accepted, duplicate, or 404) is the camera's answer. A result from another
node (``outcome``, ``posted``) is built once the node's result budget has room
for it (a big body stays in Redis until then) and counts there until released.

**Messages.** Each node reads its own Redis stream (``bus``); messages are
versioned JSON (``messages``, with the compatibility rule for rolling deploys).

**Faults.** Nodes beat every quarter of ``NODE_TIMEOUT_SECONDS``
(``membership``). Callers whose work sat at a node that stopped beating are
re-sent to the camera's new home once the camera polls a live node, or get
503 within ``CONNECT_TIMEOUT_SECONDS`` of the detection. A node that stops
gracefully answers its polls noop and parks its cameras' work in Redis for
their next home, work handed over to it while it stops included; a caller
sent to it then is placed at the camera's next home by the caller's node.
While Redis is down, a camera's home keeps serving the callers on its own node;
anything that must cross nodes gets 503 with Retry-After (``ClusterUnavailable``),
callers whose work already sat at another node once Redis has been down for a
node timeout; each failure is one warning line, and when Redis is back every
home writes its cameras again.
"""

from .errors import ClusterUnavailable
from .observer import ClusterObserver
from .relay import ClusterConfig, ClusterRelay

__all__ = ["ClusterConfig", "ClusterObserver", "ClusterRelay", "ClusterUnavailable"]
