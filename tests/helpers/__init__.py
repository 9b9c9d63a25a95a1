"""Helpers shared by the tests and tools/ (public names; no tests here)."""
