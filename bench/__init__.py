"""camrelay's benchmark harness: ``python -m bench [--quick]`` (or ``./run.sh bench``).

Every scenario starts its own server (``python -m server``) and cameras as
separate processes on 127.0.0.1, measures from outside (HTTP and ``/proc``),
and reports figures, targets and errors; see docs/BENCHMARKS.md.
"""
