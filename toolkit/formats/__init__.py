"""Parsers of untrusted files. Each is bounded and raises only its own error type."""
