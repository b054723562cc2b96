"""Helpers shared by tests (processes, message factories)."""
