"""CONTRACT.md §9: the TOML config applied idempotently; a bootstrap key and user printed once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from meisa_sync.exceptions import ConfigurationError
from meisa_sync.server import create_app
from meisa_sync.server.config import Bootstrap
from meisa_sync.server.models import ApiKey, Automation, Sequence, User

CONTRACT_EXAMPLE = """
[server]
jwt_secret = "change-me"
[[api_keys]]
key = "meisa_test_local_development_key_0000000001"   # plaintext for dev; stored hashed
scopes = ["contacts:write", "tags:write", "sequences:write"]
per_minute = 60
per_hour = 1000
[[users]]
username = "admin"
password = "admin"
[[sequences]]
slug = "welcome-pro"
name = "Welcome to Pro"
[[automations]]
name = "to pro"
trigger = { field = "plan", to = "pro" }
actions = [{ type = "add_tag", tag = "pro-plan" }, { type = "remove_tag", tag = "free-plan" }]
"""


def counts(app: Any) -> dict[str, int]:
    with app.state.meisa.db.sessions() as session:
        return {
            model.__name__: session.scalar(select(func.count()).select_from(model))
            for model in (ApiKey, User, Sequence, Automation)
        }


async def test_the_contracts_example_applied_twice(tmp_path: Path) -> None:
    config = tmp_path / "meisa-server.toml"
    config.write_text(CONTRACT_EXAMPLE)
    url = f"sqlite:///{tmp_path / 'server.db'}"
    for _ in range(2):
        app = create_app(url, config=config)
        try:
            assert counts(app) == {"ApiKey": 1, "User": 1, "Sequence": 1, "Automation": 1}
            assert app.state.bootstrap is None
        finally:
            app.state.meisa.close()
    app = create_app(url, config=config)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            response = await client.post(
                "/contacts/upsert/",
                json={"email": "c@x.io", "custom_fields": {"plan": "pro"}},
                headers={"X-API-Key": "meisa_test_local_development_key_0000000001"},
            )
            assert response.status_code == 201
            assert [t["name"] for t in response.json()["tags"]] == ["pro-plan"]
            assert response.headers["RateLimit-Policy"] == "60;w=60, 1000;w=3600"
            login = await client.post(
                "/auth/token/", json={"username": "admin", "password": "admin"}
            )
            assert login.status_code == 200
    finally:
        app.state.meisa.close()


def test_an_edited_config_updates_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'server.db'}"
    config = tmp_path / "c.toml"
    config.write_text(CONTRACT_EXAMPLE)
    create_app(url, config=config).state.meisa.close()
    edited = (
        CONTRACT_EXAMPLE.replace("per_minute = 60", "per_minute = 5")
        .replace('name = "Welcome to Pro"', 'name = "Pro onboarding"')
        .replace('password = "admin"', 'password = "s3cret"')
        .replace('tag = "pro-plan" }, ', 'tag = "pro" }, ')
    )
    config.write_text(edited)
    app = create_app(url, config=config)
    try:
        assert counts(app) == {"ApiKey": 1, "User": 1, "Sequence": 1, "Automation": 1}
        with app.state.meisa.db.sessions() as session:
            assert session.scalars(select(ApiKey.per_minute)).one() == 5
            assert session.scalars(select(Sequence.name)).one() == "Pro onboarding"
            assert session.scalars(select(Automation.actions)).one()[0]["tag"] == "pro"
    finally:
        app.state.meisa.close()


def test_empty_database_without_config_prints_a_key_and_user_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'server.db'}"
    app = create_app(url)
    bootstrap = app.state.bootstrap
    app.state.meisa.close()
    assert isinstance(bootstrap, Bootstrap)
    printed = capsys.readouterr().out
    assert bootstrap.api_key in printed and bootstrap.password in printed
    assert bootstrap.api_key.startswith("meisa_test_")
    app = create_app(url)
    assert app.state.bootstrap is None
    assert counts(app)["ApiKey"] == 1
    app.state.meisa.close()
    assert capsys.readouterr().out == ""


async def test_the_bootstrap_key_has_every_scope(tmp_path: Path) -> None:
    seen: list[Bootstrap] = []
    app = create_app(f"sqlite:///{tmp_path / 's.db'}", announce=seen.append)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
            headers = {"X-API-Key": seen[0].api_key}
            for path, body in [
                ("/contacts/upsert/", {"email": "b@x.io"}),
                ("/tags/", {"name": "t"}),
                ("/sequences/x/enroll/", {"email": "b@x.io"}),
                ("/contacts/delete/", {"email": "b@x.io"}),
            ]:
                response = await client.post(path, json=body, headers=headers)
                assert response.status_code in (200, 201, 404), response.text
    finally:
        app.state.meisa.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"api_keys": [{"key": "short"}]}, "api_keys[0].key"),
        ({"api_keys": [{"key": "meisa_live_" + "a" * 32, "scopes": ["x"]}]}, "api_keys[0].scopes"),
        ({"users": [{"username": "x"}]}, "users[0].password"),
        ({"sequences": [{"slug": "Not A Slug"}]}, "sequences[0].slug"),
        ({"automations": [{"name": "x", "trigger": {"field": "plan"}, "actions": [
            {"type": "enroll", "sequence": "missing"}]}]}, "automations[0].actions[0].sequence"),
        ({"server": {"jwt_secret": ""}}, "server.jwt_secret"),
        ({"apikeys": []}, "apikeys"),
    ],
)  # fmt: skip
def test_a_bad_config_names_the_entry(tmp_path: Path, config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        create_app(f"sqlite:///{tmp_path / 'bad.db'}", config=config)


def test_a_config_file_that_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        create_app(f"sqlite:///{tmp_path / 'bad.db'}", config=path)
