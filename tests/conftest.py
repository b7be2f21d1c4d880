"""Shared fixtures. Each module under ``tests/fixtures/`` holds one family of them."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.databases",
    "tests.fixtures.server",
]
