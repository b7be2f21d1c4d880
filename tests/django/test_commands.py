"""``manage.py meisa_sync drain|status|retry|purge|backfill`` and ``meisa-sync --django-settings``,
end to end against the reference server on each database."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from django.core.management import CommandError, call_command

from meisa_sync.cli import main
from meisa_sync_django.store import DjangoStore
from tests.django.databases import on_database
from tests.django.testapp.models import Subscription, User
from tests.fixtures.server import LiveMeisa


def _status(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    call_command("meisa_sync", "status", "--json")
    status: dict[str, Any] = json.loads(capsys.readouterr().out)
    return status


class _Commands:
    alias = "default"

    @pytest.fixture(autouse=True)
    def configured(self, settings: Any, live_meisa: LiveMeisa) -> None:
        settings.MEISA_SYNC = {
            "API_KEY": live_meisa.api_key,
            "BASE_URL": live_meisa.base_url,
            "DATABASE": self.alias,
            "WORKER": {"CONCURRENCY": 2},
        }

    def _user(self, name: str, email: str | None = None, plan: str = "free") -> User:
        user: User = User.objects.db_manager(self.alias).create_user(
            username=name, email=email or f"{name}@example.com"
        )
        Subscription.objects.using(self.alias).create(user=user, plan=plan)
        return user

    def test_drain_status_retry_purge(
        self, live_meisa: LiveMeisa, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ada = self._user("ada")
        bad = self._user("bad", email="not-an-email")
        assert _status(capsys)["pending"] == 4

        with pytest.raises(CommandError) as died:
            call_command("meisa_sync", "drain", "--once")
        assert died.value.returncode == 1  # some records are dead
        assert live_meisa.contact(external_id=str(ada.pk))["custom_fields"]["plan"] == "free"
        status = _status(capsys)
        assert (status["pending"], status["dead"]) == (0, 2)

        # The user's email is fixed; the dead records are retried and go through.
        bad.email = "bad@example.com"
        User.save(bad, update_fields=["email"])
        call_command("meisa_sync", "retry", "--all")
        call_command("meisa_sync", "drain", "--once")
        assert live_meisa.contact(email="bad@example.com") is not None
        assert _status(capsys)["dead"] == 0

        # A dead record that nobody wants any more is purged.
        User.objects.db_manager(self.alias).create_user(username="ghost", email="nope")
        with pytest.raises(CommandError):
            call_command("meisa_sync", "drain", "--once")
        call_command("meisa_sync", "purge", "--yes")
        status = _status(capsys)
        assert (status["pending"], status["dead"]) == (0, 0)

    def test_backfill_then_drain(
        self, live_meisa: LiveMeisa, capsys: pytest.CaptureFixture[str]
    ) -> None:
        users = [self._user(name, plan="pro") for name in ("ada", "bob", "cy")]
        store = DjangoStore(self.alias)
        for claimed in store.claim("test", limit=10, lease=_minute()):
            store.ack("test", claimed.key, claimed.record_ids, payload_hash=None)
        assert _status(capsys)["pending"] == 0

        call_command("meisa_sync", "backfill", "--batch-size", "2")
        assert "testapp.User: 3 recorded" in capsys.readouterr().out
        assert _status(capsys)["pending"] == 3
        call_command("meisa_sync", "backfill")
        assert "already backfilled" in capsys.readouterr().out

        call_command("meisa_sync", "drain", "--once")
        for user in users:
            contact = live_meisa.contact(external_id=str(user.pk))
            assert contact["custom_fields"]["plan"] == "pro"

    def test_the_core_cli_finds_the_project_by_its_settings(self, live_meisa: LiveMeisa) -> None:
        ada = self._user("ada")
        result = CliRunner().invoke(
            main,
            [
                "drain",
                "--django-settings",
                "tests.django.testproject.settings",
                "--once",
                "--api-key",
                live_meisa.api_key,
                "--base-url",
                live_meisa.base_url,
            ],
        )
        assert result.exit_code == 0, result.output
        assert live_meisa.contact(external_id=str(ada.pk)) is not None


def _minute() -> Any:
    from datetime import timedelta

    return timedelta(minutes=1)


class TestSQLiteCommands(_Commands):
    pytestmark = on_database("default", transaction=True)
    alias = "default"


class TestPostgreSQLCommands(_Commands):
    pytestmark = on_database("postgres", transaction=True)
    alias = "postgres"


class TestMySQLCommands(_Commands):
    pytestmark = on_database("mysql", transaction=True)
    alias = "mysql"


@pytest.mark.django_db
def test_an_unknown_subcommand_is_a_usage_error() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'send'"):
        call_command("meisa_sync", "send")
