"""Marks for test classes that run on one configured database alias each.

Transactional tests flush their databases after each test; giving each class one alias keeps that
to the database it used (``databases="__all__"`` would flush all three every time).
"""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.fixtures.databases import in_ci

ALIASES = ("default", "postgres", "mysql")
VARIABLES = {"postgres": "MEISA_TEST_POSTGRES_URL", "mysql": "MEISA_TEST_MYSQL_URL"}


def on_database(alias: str, *, transaction: bool = False) -> list[pytest.MarkDecorator]:
    """Marks running a class on ``alias``; skipped when it is not configured (failed under CI)."""
    missing = alias not in settings.DATABASES and not in_ci()
    return [
        pytest.mark.skipif(missing, reason=f"set {VARIABLES.get(alias)} to run against {alias}"),
        pytest.mark.django_db(transaction=transaction, databases=[alias]),
    ]
