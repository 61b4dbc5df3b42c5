"""Serving: the listening socket, the runner, the worker supervisor and the HTTP parser's guard."""
