"""``meisa-sync demo`` runs from nothing, and leaves Meisa holding what the seed's story says."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from meisa_sync.cli import main
from meisa_sync.demo.dashboard import Dashboard
from meisa_sync.demo.models import Base
from meisa_sync.demo.server import DEMO_PASSWORD, DEMO_USERNAME, running_server
from meisa_sync_sqlalchemy import outbox_tables

CROWD = 60


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(main, ["demo", "--users", str(CROWD), "--keep", str(folder)])
    assert result.exit_code == 0, result.output
    return folder, result.output


def test_the_demo_prints_the_story_and_a_summary(demo_folder: tuple[Path, str]) -> None:
    _, output = demo_folder
    assert "1. Ada and Grace sign up (plan free)" in output
    assert "3. Grace churns" in output
    assert "1,000,000 requests a minute" in output  # the high-limit key is said out loud
    assert f"contacts in Meisa:  {CROWD + 2}" in output
    assert f"requests sent:      {CROWD + 5}" in output  # 2 + 2 + 1 story steps, one per crowd user
    assert "dead records:       0" in output


def test_meisa_holds_the_seed_story_outcome(demo_folder: tuple[Path, str]) -> None:
    folder, _ = demo_folder
    with (
        running_server(folder / "meisa-server.db") as root_url,
        Dashboard(f"{root_url}/api/v1", DEMO_USERNAME, DEMO_PASSWORD) as dashboard,
    ):
        ada = dashboard.contact("ada@example.com")
        grace = dashboard.contact("grace@example.com")
        assert dashboard.count_contacts() == CROWD + 2
    assert ada is not None and grace is not None

    assert ada.custom_fields["plan"] == "pro"
    assert ada.custom_fields["mrr"] == 99
    assert "upgraded_at" in ada.custom_fields
    assert ada.tags == ["paying-customer", "pro-plan"]
    assert ada.enrollments == [("welcome", "active"), ("welcome-pro", "active")]

    assert grace.custom_fields["plan"] == "churned"
    assert grace.custom_fields["churn_reason"] == "too expensive"
    assert grace.custom_fields["previous_plan"] == "pro"
    assert grace.tags == ["churned", "pro-plan"]
    assert [sequence for sequence, _ in grace.enrollments] == ["welcome", "welcome-pro", "win-back"]
    fired = [e["data"]["rule_name"] for e in grace.activity if e["kind"] == "automation"]
    assert fired == ["signup", "to pro", "free to paid", "churn"]


def test_the_outbox_is_empty_after_the_demo(demo_folder: tuple[Path, str]) -> None:
    folder, _ = demo_folder
    engine = create_engine(f"sqlite:///{folder / 'app.db'}")
    try:
        outbox = outbox_tables(Base.metadata).outbox
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(outbox)) == 0
    finally:
        engine.dispose()
