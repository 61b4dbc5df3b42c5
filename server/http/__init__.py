"""The HTTP API: parse, call the relay service, map its errors to problems."""
