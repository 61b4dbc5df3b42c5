"""Observability: metrics, the event log, logging set-up."""
