"""The outbox admin: listing by state, the readable record page, the retry and mark-dead actions."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from meisa_sync.records import ObjectKey
from meisa_sync_django.models import OutboxRecord
from meisa_sync_django.store import DjangoStore
from tests.django.helpers import USER, make_user

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:meisa_sync_outboxrecord_changelist"


@pytest.fixture
def dead_and_sent() -> tuple[OutboxRecord, OutboxRecord]:
    """Ada's first change was acknowledged, her second died; Bob's change is pending."""
    store = DjangoStore()
    ada, bob = make_user("default", "ada"), make_user("default", "bob")
    ada.save()
    (claimed,) = store.claim("w1", limit=1, lease=_minute())
    store.ack(
        "w1",
        claimed.key,
        claimed.record_ids,
        payload_hash="h" * 64,
        payload='{"email":"ada@example.com","custom_fields":{"plan":"free"}}',
        remote_id="contact-ada",
    )
    ada.save()
    bob.save()
    (claimed,) = store.claim("w1", limit=1, lease=_minute())
    assert claimed.key == ObjectKey(USER, str(ada.pk))
    store.dead("w1", claimed.key, claimed.record_ids, error="409 identifier_conflict: <b>taken</b>")
    return (
        OutboxRecord.objects.get(state="dead"),
        OutboxRecord.objects.get(state="pending"),
    )


def _minute() -> Any:
    from datetime import timedelta

    return timedelta(minutes=1)


def test_the_changelist_filters_by_state(
    admin_client: Client, dead_and_sent: tuple[OutboxRecord, OutboxRecord]
) -> None:
    dead, _ = dead_and_sent
    response = admin_client.get(reverse(CHANGELIST), {"state__exact": "dead"})
    assert response.status_code == 200
    shown = [record.pk for record in response.context["cl"].result_list]
    assert shown == [dead.pk]
    assert "409 identifier_conflict" in response.content.decode()


def test_the_record_page_shows_the_error_and_the_payload_last_sent(
    admin_client: Client, dead_and_sent: tuple[OutboxRecord, OutboxRecord]
) -> None:
    dead, _ = dead_and_sent
    response = admin_client.get(reverse("admin:meisa_sync_outboxrecord_change", args=[dead.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "409 identifier_conflict: &lt;b&gt;taken&lt;/b&gt;" in page  # escaped, never HTML
    assert "&quot;plan&quot;: &quot;free&quot;" in page  # pretty-printed JSON
    assert "contact-ada" in page
    assert 'name="_save"' not in page  # read-only


def test_records_cannot_be_added(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:meisa_sync_outboxrecord_add"))
    assert response.status_code == 403


def test_the_retry_action_makes_dead_records_due_now(
    admin_client: Client, dead_and_sent: tuple[OutboxRecord, OutboxRecord]
) -> None:
    dead, _ = dead_and_sent
    response = admin_client.post(
        reverse(CHANGELIST), {"action": "retry_records", "_selected_action": [dead.pk]}
    )
    assert response.status_code == 302
    dead.refresh_from_db()
    assert (dead.state, dead.attempts) == ("pending", 0)
    claimed = DjangoStore().claim("w2", limit=5, lease=_minute())
    assert dead.pk in {record_id for c in claimed for record_id in c.record_ids}


def test_the_mark_dead_action_stops_pending_records(
    admin_client: Client, dead_and_sent: tuple[OutboxRecord, OutboxRecord]
) -> None:
    _, pending = dead_and_sent
    admin_client.post(
        reverse(CHANGELIST), {"action": "mark_dead", "_selected_action": [pending.pk]}
    )
    pending.refresh_from_db()
    assert pending.state == "dead"
    assert pending.last_error == "marked dead in the admin by admin"
    claimed = DjangoStore().claim("w2", limit=5, lease=_minute())
    assert pending.pk not in {record_id for c in claimed for record_id in c.record_ids}
    assert {record.id for record in DjangoStore().list_dead()} >= {pending.pk}
