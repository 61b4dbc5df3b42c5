"""A deterministic simulation of a cluster: nodes on one in-memory store, in virtual time."""
