"""Concurrent upserts of one new identifier create one contact (unique indexes + retry)."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.fixtures.server import SEED_KEY, live_server, make_meisa_app

THREADS = 8


def test_eight_threads_upserting_one_new_email_make_one_contact(database_url: str) -> None:
    app = make_meisa_app(database_url)
    try:
        with live_server(app) as root_url:
            base = f"{root_url}/api/v1"
            barrier = threading.Barrier(THREADS)
            results: list[Any] = []

            def send(index: int) -> None:
                with httpx.Client(base_url=base, headers={"X-API-Key": SEED_KEY}) as client:
                    barrier.wait()
                    response = client.post(
                        "/contacts/upsert/",
                        json={
                            "email": "race@example.com",
                            "custom_fields": {"plan": "free", f"by_{index}": True},
                            "tag_names": ["racer"],
                        },
                        timeout=30,
                    )
                    results.append((response.status_code, response.json()))

            threads = [threading.Thread(target=send, args=(i,)) for i in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

            statuses = sorted(status for status, _ in results)
            assert statuses == [200] * (THREADS - 1) + [201], results
            assert len({body["id"] for _, body in results}) == 1
            token = httpx.post(
                f"{base}/auth/token/", json={"username": "admin", "password": "admin-password"}
            ).json()["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            listed = httpx.get(f"{base}/contacts/", headers=admin).json()["results"]
            assert len(listed) == 1
            contact = listed[0]
            assert {f"by_{i}" for i in range(THREADS)} <= set(contact["custom_fields"])
            assert sorted(t["name"] for t in contact["tags"]) == ["free-plan", "racer"]
            detail = httpx.get(f"{base}/contacts/{contact['id']}/", headers=admin).json()
            # The signup rule fired once: one welcome enrollment.
            assert [e["sequence"] for e in detail["enrollments"]] == ["welcome"]
    finally:
        app.state.meisa.close()


def test_racing_requests_with_one_idempotency_key_run_once(database_url: str) -> None:
    app = make_meisa_app(database_url)
    try:
        with live_server(app) as root_url:
            barrier = threading.Barrier(THREADS)
            results: list[httpx.Response] = []
            headers = {"X-API-Key": SEED_KEY, "Idempotency-Key": "outbox-row-42"}

            def send() -> None:
                with httpx.Client(base_url=f"{root_url}/api/v1", headers=headers) as client:
                    barrier.wait()
                    body = {"email": "once@example.com", "custom_fields": {"plan": "free"}}
                    results.append(client.post("/contacts/upsert/", json=body, timeout=30))

            threads = [threading.Thread(target=send) for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert [r.status_code for r in results] == [201] * THREADS
            assert len({r.text for r in results}) == 1
            replayed = [r for r in results if r.headers.get("Idempotent-Replayed") == "true"]
            assert len(replayed) == THREADS - 1
            log = httpx.get(f"{root_url}/_meisa/requests/").json()
            assert len(log) == THREADS
    finally:
        app.state.meisa.close()
