"""Settings of the small Django project the Django app's tests run in.

SQLite is the ``default`` database; PostgreSQL (``postgres``) and MariaDB/MySQL (``mysql``) are
added when ``MEISA_TEST_POSTGRES_URL`` / ``MEISA_TEST_MYSQL_URL`` are set, so one pytest run
covers all three through Django's multi-database support.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

SECRET_KEY = "meisa-sync-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["testserver", "localhost"]
ROOT_URLCONF = "tests.django.testproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "testapp.User"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "meisa_sync_django",
    "tests.django.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

MEISA_SYNC = {
    "API_KEY": "meisa_test_local_development_key_0000000001",
    "BASE_URL": "http://127.0.0.1:8000/api/v1",
}

# A file, not SQLite's shared in-memory database: the store's tests claim from several threads, and
# shared-cache memory databases answer concurrent writers with "table is locked" at once. Django
# deletes the test file when the run ends; the pid keeps concurrent runs apart.
_TMP = Path(tempfile.gettempdir())

DATABASES: dict[str, dict[str, Any]] = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(_TMP / "meisa-sync-django-testproject.db"),
        "TEST": {"NAME": str(_TMP / f"meisa-sync-django-test-{os.getpid()}.db")},
    }
}


def _server_database(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme in {"postgresql", "postgres"}:
        engine = "django.db.backends.postgresql"
    elif scheme in {"mysql", "mariadb"}:
        # Django's MySQL backend expects mysqlclient; PyMySQL stands in for it.
        importlib.import_module("pymysql").install_as_MySQLdb()
        engine = "django.db.backends.mysql"
    else:
        raise ValueError(f"unsupported test database URL {url!r}")
    return {
        "ENGINE": engine,
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # Django makes every alias's test database wait for "default" unless told otherwise, so
        # a run selecting only this alias's tests could not set it up.
        "TEST": {"DEPENDENCIES": []},
    }


for _alias, _variable in (
    ("postgres", "MEISA_TEST_POSTGRES_URL"),
    ("mysql", "MEISA_TEST_MYSQL_URL"),
):
    if os.environ.get(_variable):
        DATABASES[_alias] = _server_database(os.environ[_variable])
