"""A small in-memory app for the worker and CLI tests, and a scriptable Meisa for failure shapes.

``app`` is what ``meisa-sync drain --app tests.core.sync_helpers:app`` loads; ``build_app()``
returns a fresh one. ``ScriptedMeisa`` answers like Meisa (CONTRACT.md §1, §4) but lets a test say
which status comes next: the failures the reference server cannot produce on demand.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from meisa_sync.app import SyncApp
from meisa_sync.client import MeisaClient
from meisa_sync.mapping import ContactMapping, CustomField, Field
from meisa_sync.memory import InMemorySource, InMemoryStore, utc_now
from meisa_sync.records import NewChange, ObjectKey, Operation, Priority

API_KEY = "meisa_test_worker_tests_key_000000000000000001"
BASE_URL = "http://meisa.test/api/v1"
USER = "tests.User"


class FakeClock:
    """Aware UTC time that moves only when told."""

    def __init__(self) -> None:
        self.current = utc_now()

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@dataclass
class User:
    id: int
    email: str | None
    first_name: str = "Ada"
    plan: str = "free"
    is_staff: bool = False


class UserMapping(ContactMapping):
    email = Field("email")
    external_id = Field("id")
    first_name = Field("first_name")
    plan = CustomField("plan")

    def should_sync(self, obj: Any) -> bool:
        return not obj.is_staff


@dataclass
class MemoryApp:
    """A ``SyncApp`` over the in-memory twins, with shortcuts to save and delete users."""

    store: InMemoryStore
    source: InMemorySource
    sync_app: SyncApp

    def save(
        self, user: User, *, extras: dict[str, Any] | None = None, priority: int = Priority.LIVE
    ) -> ObjectKey:
        key = self.source.put(USER, user.id, user)
        self.store.enqueue([NewChange(key, extras=extras, priority=priority)])
        return key

    def delete(self, user: User) -> ObjectKey:
        key = ObjectKey(USER, str(user.id))
        identifiers = UserMapping().identifiers(user)
        self.source.remove(USER, user.id)
        self.store.enqueue([NewChange(key, Operation.DELETE, identifiers=identifiers)])
        return key


def build_app(clock: Callable[[], datetime] = utc_now) -> MemoryApp:
    store = InMemoryStore(clock=clock)
    source = InMemorySource()
    return MemoryApp(store, source, SyncApp(store, source, {USER: UserMapping()}))


app = build_app().sync_app

# What ``--app tests.core.sync_helpers:current_app`` finds: the CLI tests put a fresh app here.
CURRENT = build_app()


def current_app() -> SyncApp:
    return CURRENT.sync_app


# -- a scriptable Meisa ----------------------------------------------------------------------------

Answer = Callable[[httpx.Request], httpx.Response]


def error(status: int, code: str, message: str, **headers: str) -> Answer:
    """An answer in CONTRACT.md §1's error shape."""
    body = {"error": {"code": code, "message": message, "details": []}}
    return lambda request: httpx.Response(status, json=body, headers=headers)


def broken_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("peer closed connection", request=request)


@dataclass
class ScriptedMeisa:
    """Answers upserts and deletes like Meisa unless ``script`` holds an answer for the next one.

    ``requests`` keeps every request (path, JSON body, headers) in arrival order; ``during``
    runs inside every request (to act while it is in flight); ``in_flight_peak`` is the highest
    number of requests seen at once.
    """

    script: list[Answer] = field(default_factory=list)
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    during: Callable[[httpx.Request], object] | None = None
    in_flight_peak: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self._lock:
            self.requests.append((request.url.path, body, dict(request.headers)))
            answer = self.script.pop(0) if self.script else None
            self._in_flight += 1
            self.in_flight_peak = max(self.in_flight_peak, self._in_flight)
        try:
            if self.during is not None:
                self.during(request)
            if answer is not None:
                return answer(request)
            contact_id = f"contact-{body.get('external_id') or body.get('email')}"
            if request.url.path.endswith("/contacts/delete/"):
                return httpx.Response(200, json={"deleted": True, "id": contact_id})
            return httpx.Response(200, json={"id": contact_id, **body})
        finally:
            with self._lock:
                self._in_flight -= 1

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body, _ in self.requests]

    @contextmanager
    def client(self) -> Iterator[MeisaClient]:
        with MeisaClient(API_KEY, base_url=BASE_URL, transport=httpx.MockTransport(self)) as c:
            yield c
