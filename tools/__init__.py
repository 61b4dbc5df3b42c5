"""Developer tools that need more than the runtime: the browser for tests, screenshots, bench."""
