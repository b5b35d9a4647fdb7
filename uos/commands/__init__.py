"""Thin click wrappers, one module per command. Module level imports only click and the
standard library: `uos --help` must stay fast, and heavy packages load when a command runs."""
