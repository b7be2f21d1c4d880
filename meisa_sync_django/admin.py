"""The outbox in the Django admin: records by state, what was last sent, why a record died.

Records are read-only (the worker owns them); two actions change their state: *retry* (pending and
due now, attempts reset: what ``meisa-sync retry`` does) and *mark dead* (stop retrying; kept,
listed,
retryable). The last acknowledged payload of the record's object is shown on its page.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from meisa_sync.records import RecordState
from meisa_sync_django.conf import sync_settings
from meisa_sync_django.models import ObjectState, OutboxRecord
from meisa_sync_django.outbox import db_now

__all__ = ["OutboxRecordAdmin"]

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[OutboxRecord]
else:
    _ModelAdmin = admin.ModelAdmin  # generic only in the stubs


@admin.register(OutboxRecord)
class OutboxRecordAdmin(_ModelAdmin):
    list_display = (
        "id",
        "model",
        "object_pk",
        "operation",
        "state",
        "attempts",
        "priority",
        "available_at",
        "error_summary",
    )
    list_filter = ("state", "operation", "model", "priority")
    search_fields = ("object_pk", "last_error")
    ordering = ("-id",)
    actions = ("retry_records", "mark_dead")
    fields = (
        ("model", "object_pk"),
        ("operation", "state"),
        ("priority", "attempts"),
        ("created_at", "available_at"),
        "error",
        "extras_json",
        "identifiers_json",
        "last_sent",
    )
    readonly_fields = tuple(
        name for entry in fields for name in (entry if isinstance(entry, tuple) else (entry,))
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboxRecord]:
        records: QuerySet[OutboxRecord] = super().get_queryset(request)
        on_store_database: QuerySet[OutboxRecord] = records.using(sync_settings().database)
        return on_store_database

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The page is for reading; the actions need the change permission.
        return super().has_change_permission(request, obj) and obj is None

    @admin.display(description="last error")
    def error_summary(self, record: OutboxRecord) -> str:
        error = record.last_error or ""
        return error if len(error) <= 80 else error[:79] + "…"

    @admin.display(description="last error")
    def error(self, record: OutboxRecord) -> SafeString:
        return _pre(record.last_error or "—")

    @admin.display(description="extra fields")
    def extras_json(self, record: OutboxRecord) -> SafeString:
        return _pre(_pretty(record.extras))

    @admin.display(description="identifiers (deletes)")
    def identifiers_json(self, record: OutboxRecord) -> SafeString:
        return _pre(_pretty(record.identifiers))

    @admin.display(description="payload last sent")
    def last_sent(self, record: OutboxRecord) -> SafeString:
        state = (
            ObjectState.objects.using(sync_settings().database)
            .filter(model=record.model, object_pk=record.object_pk)
            .values("payload", "last_sent_at", "remote_id")
            .first()
        )
        if state is None or state.get("payload") is None:
            return _pre("nothing acknowledged yet")
        payload = state["payload"]
        try:
            text = json.dumps(json.loads(payload), indent=2, sort_keys=True, ensure_ascii=False)
        except ValueError:
            text = payload
        return format_html(
            "<pre>{}</pre><p>acknowledged {} · Meisa contact {}</p>",
            text,
            state["last_sent_at"],
            state["remote_id"] or "—",
        )

    @admin.action(description="Retry the selected records now", permissions=["change"])
    def retry_records(self, request: HttpRequest, queryset: QuerySet[OutboxRecord]) -> None:
        count = queryset.update(state=RecordState.PENDING.value, available_at=db_now(), attempts=0)
        self.message_user(request, f"{count} record(s) will be sent on the next drain.")

    @admin.action(description="Mark the selected records dead", permissions=["change"])
    def mark_dead(self, request: HttpRequest, queryset: QuerySet[OutboxRecord]) -> None:
        user = getattr(request.user, "get_username", lambda: "someone")()
        count = queryset.filter(state=RecordState.PENDING.value).update(
            state=RecordState.DEAD.value,
            available_at=db_now(),
            last_error=f"marked dead in the admin by {user}",
        )
        self.message_user(request, f"{count} record(s) marked dead.", messages.WARNING)


def _pretty(value: object) -> str:
    if value is None:
        return "—"
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _pre(text: str) -> SafeString:
    return format_html("<pre>{}</pre>", text)
