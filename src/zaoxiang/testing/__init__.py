"""Helpers shared by tests, the CLI and other engineers' tests: tiny random models of real architectures."""
