"""The seed documentation's sequences and automations, as data.

The table at the end of CONTRACT.md §6 written in the automation grammar: the shared fixture of the
tests, the demo and the docs. ``seed_config()`` is a ready-to-use server config (CONTRACT.md §9)
holding them, for ``create_app(config=...)``.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "AUTOMATIONS",
    "PLANS",
    "SEQUENCES",
    "seed_config",
]

#: The plans the seed's story moves through.
PLANS = ("free", "pro", "churned")

SEQUENCES: tuple[dict[str, Any], ...] = (
    {"slug": "welcome", "name": "Welcome"},
    {"slug": "welcome-pro", "name": "Welcome to Pro"},
    {"slug": "win-back", "name": "Win back"},
)

AUTOMATIONS: tuple[dict[str, Any], ...] = (
    {
        "name": "signup",
        "position": 10,
        "trigger": {"field": "plan", "to": "free"},
        "actions": [
            {"type": "add_tag", "tag": "free-plan"},
            {"type": "enroll", "sequence": "welcome"},
        ],
    },
    {
        "name": "to pro",
        "position": 20,
        "trigger": {"field": "plan", "to": "pro"},
        "actions": [
            {"type": "add_tag", "tag": "pro-plan"},
            {"type": "remove_tag", "tag": "free-plan"},
        ],
    },
    {
        "name": "free to paid",
        "position": 30,
        "trigger": {"field": "plan", "from": "free", "to": {"not_in": ["free", "churned"]}},
        "actions": [
            {"type": "add_tag", "tag": "paying-customer"},
            {"type": "enroll", "sequence": "welcome-pro"},
        ],
    },
    {
        "name": "churn",
        "position": 40,
        "trigger": {"field": "plan", "to": "churned"},
        "actions": [
            {"type": "add_tag", "tag": "churned"},
            {"type": "remove_tag", "tag": "paying-customer"},
            {"type": "enroll", "sequence": "win-back"},
        ],
    },
)


def seed_config(
    *,
    api_keys: list[dict[str, Any]] | None = None,
    users: list[dict[str, Any]] | None = None,
    jwt_secret: str | None = None,
) -> dict[str, Any]:
    """A server config with the seed's sequences and automations, plus the given keys and users."""
    config: dict[str, Any] = {
        "sequences": copy.deepcopy(list(SEQUENCES)),
        "automations": copy.deepcopy(list(AUTOMATIONS)),
        "api_keys": copy.deepcopy(api_keys or []),
        "users": copy.deepcopy(users or []),
    }
    if jwt_secret is not None:
        config["server"] = {"jwt_secret": jwt_secret}
    return config
