"""pytest-django for the tests under ``tests/django`` only.

Importing this conftest points Django at the test project and sets it up; the rest of the suite
never imports it unless tests under ``tests/django`` are collected, and non-Django tests run the
same either way (pytest-django blocks only Django's own database connections).

``alias`` parametrizes a test over every configured database: SQLite always, PostgreSQL and MariaDB
when ``MEISA_TEST_POSTGRES_URL`` / ``MEISA_TEST_MYSQL_URL`` are set (required under ``CI=true``).
"""

from __future__ import annotations

import os

import django
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django.testproject.settings")
django.setup()

from django.conf import settings  # noqa: E402

from tests.django.databases import ALIASES, VARIABLES  # noqa: E402
from tests.fixtures.databases import in_ci  # noqa: E402


@pytest.fixture(params=ALIASES, ids=["sqlite", "postgresql", "mysql"])
def alias(request: pytest.FixtureRequest) -> str:
    """A configured database alias (tests using it need ``django_db(databases="__all__")``)."""
    name = str(request.param)
    if name not in settings.DATABASES:
        message = f"set {VARIABLES[name]} to run against {name}"
        if in_ci():
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return name
