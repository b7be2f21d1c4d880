"""One contact's changes inside one transaction, written with few statements.

The upsert, the tags endpoint, enrollment and the automations all change a contact the same way:
tags added or removed (idempotently), enrollments per CONTRACT.md §5, activity entries. A
:class:`ContactEditor` does it with SQLAlchemy Core on the transaction's connection: the contact's
tags are read once and kept in memory, the activity is written in one multi-row INSERT at the end,
and the contact row gets at most one UPDATE. That keeps an upsert to a handful of statements, which
is most of its cost (CONTRACT.md's throughput target is relative to ``/health/``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, select, update

from meisa_sync.server.activity import KINDS
from meisa_sync.server.context import ServerContext
from meisa_sync.server.db import pipelined
from meisa_sync.server.models import (
    Activity,
    Contact,
    ContactTag,
    Enrollment,
    Sequence,
    Tag,
    new_id,
)
from meisa_sync.server.shapes import contact_view, enrollment_view

TAGS_CACHE = "tag"

__all__ = [
    "TAGS_CACHE",
    "ContactEditor",
    "SequenceInfo",
    "find_sequence",
]

contacts = cast(Table, Contact.__table__)
tags_table = cast(Table, Tag.__table__)
links = cast(Table, ContactTag.__table__)
enrollments = cast(Table, Enrollment.__table__)
sequences = cast(Table, Sequence.__table__)
activity = cast(Table, Activity.__table__)

# Built once: constructing and cache-keying a statement per call is a large share of an upsert.
_INSERT_CONTACT = insert(contacts)
_UPDATE_CONTACT = update(contacts).where(contacts.c.id == bindparam("contact_key"))
_CONTACT_TAGS = (
    select(tags_table.c.id, tags_table.c.name, tags_table.c.name_key)
    .join(links, links.c.tag_id == tags_table.c.id)
    .where(links.c.contact_id == bindparam("contact_key"))
)
_INSERT_LINK = insert(links)
_DELETE_LINK = delete(links).where(
    and_(links.c.contact_id == bindparam("contact_key"), links.c.tag_id == bindparam("tag_key"))
)
_HISTORY = (
    select(enrollments)
    .where(
        and_(
            enrollments.c.contact_id == bindparam("contact_key"),
            enrollments.c.sequence_id == bindparam("sequence_key"),
        )
    )
    .order_by(enrollments.c.seq)
)
_INSERT_ENROLLMENT = insert(enrollments)
_EXIT_ENROLLMENT = update(enrollments).where(enrollments.c.id == bindparam("enrollment_key"))
_INSERT_ACTIVITY = insert(activity)
_FIND_TAG = select(tags_table.c.id, tags_table.c.name).where(
    tags_table.c.name_key == bindparam("name_key_value")
)
_INSERT_TAG = insert(tags_table)


@dataclass(frozen=True)
class SequenceInfo:
    id: str
    slug: str
    allow_reenrollment: bool


def find_sequence(connection: Connection, slug: str) -> SequenceInfo | None:
    row = connection.execute(
        select(sequences.c.id, sequences.c.slug, sequences.c.allow_reenrollment).where(
            sequences.c.slug == slug
        )
    ).first()
    return None if row is None else SequenceInfo(row.id, row.slug, row.allow_reenrollment)


class ContactEditor:
    """Changes to one contact: tags, enrollments, columns, activity.

    Reads happen when needed; writes are kept in memory (netted: a tag added then removed in one
    request writes nothing) and :meth:`finish` writes them, one statement per table.
    """

    def __init__(
        self,
        connection: Connection,
        row: Mapping[str, Any],
        now: datetime,
        *,
        created: bool,
        cache: ServerContext | None = None,
        tags: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.connection = connection
        self.cache = cache
        self.values = dict(row)
        self.id: str = self.values["id"]
        self.now = now
        self.created = created
        # What the answer's updated_at reflects: any change to the contact or its tags.
        self.touched = created
        self._changed_columns: dict[str, Any] = {}
        # The contact's tags by lower-cased name: known when created (none) or passed in,
        # else read on first use.
        self._tags: dict[str, dict[str, str]] | None = {} if created else tags
        self._histories: dict[str, list[dict[str, Any]]] = {}
        self._link_inserts: dict[str, dict[str, Any]] = {}
        self._link_deletes: set[str] = set()
        self._enrollment_inserts: dict[str, dict[str, Any]] = {}
        self._enrollment_exits: set[str] = set()
        self._activity: list[dict[str, Any]] = []

    @classmethod
    def create(
        cls,
        connection: Connection,
        values: Mapping[str, Any],
        now: datetime,
        cache: ServerContext | None = None,
    ) -> ContactEditor:
        """A new contact, inserted by :meth:`finish` (a concurrent insert of the same identifier
        then fails and the transaction is retried)."""
        row = {
            "id": new_id(),
            "email": None,
            "external_id": None,
            "first_name": None,
            "last_name": None,
            "custom_fields": {},
            "status": "active",
            **values,
            "created_at": now,
            "updated_at": now,
        }
        return cls(connection, row, now, created=True, cache=cache)

    def set(self, column: str, value: Any) -> None:
        """Change a column (written by :meth:`finish`)."""
        self.values[column] = value
        self._changed_columns[column] = value
        self.touched = True

    def log(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append an activity entry; the returned dict may still be filled before :meth:`finish`."""
        assert kind in KINDS, kind
        self._activity.append({"contact_id": self.id, "at": self.now, "kind": kind, "data": data})
        return data

    def tags(self) -> dict[str, dict[str, str]]:
        """The contact's tags by lower-cased name, as they are now in this request."""
        if self._tags is None:
            rows = self.connection.execute(_CONTACT_TAGS, {"contact_key": self.id})
            self._tags = {row.name_key: {"id": row.id, "name": row.name} for row in rows}
        return self._tags

    def add_tag(self, name: str, via: Mapping[str, Any] | None = None) -> bool:
        """Add the tag (created if new); False when the contact already had it."""
        key = name.lower()
        current = self.tags()
        if key in current:
            return False
        tag = get_or_create_tag(self.connection, name, self.now, self.cache)[0]
        if tag["id"] in self._link_deletes:
            self._link_deletes.discard(tag["id"])  # removed earlier in this request: keep it
        else:
            link = {"contact_id": self.id, "tag_id": tag["id"], "added_at": self.now}
            self._link_inserts[tag["id"]] = link
        current[key] = tag
        self.touched = True
        self.log("tag_added", {"tag": tag["name"], **(via or {})})
        return True

    def remove_tag(self, name: str, via: Mapping[str, Any] | None = None) -> bool:
        """Remove the tag; False when the contact did not have it."""
        tag = self.tags().pop(name.lower(), None)
        if tag is None:
            return False
        if self._link_inserts.pop(tag["id"], None) is None:
            self._link_deletes.add(tag["id"])
        self.touched = True
        self.log("tag_removed", {"tag": tag["name"], **(via or {})})
        return True

    def _history(self, sequence: SequenceInfo) -> list[dict[str, Any]]:
        """The contact's enrollments in the sequence, oldest first, as they are now."""
        history = self._histories.get(sequence.id)
        if history is None:
            if self.created:
                history = []
            else:
                rows = self.connection.execute(
                    _HISTORY, {"contact_key": self.id, "sequence_key": sequence.id}
                ).mappings()
                history = [dict(row) for row in rows]
            self._histories[sequence.id] = history
        return history

    def enroll(
        self, sequence: SequenceInfo, via: Mapping[str, Any] | None = None
    ) -> tuple[bool, dict[str, Any]]:
        """Enroll per §5: ``(True, new)``, or ``(False, the active or latest one)``."""
        history = self._history(sequence)
        active = [row for row in history if row["status"] == "active"]
        if active:
            return False, enrollment_view(active[-1], sequence.slug)
        if history and not sequence.allow_reenrollment:
            return False, enrollment_view(history[-1], sequence.slug)
        row: dict[str, Any] = {
            "id": new_id(),
            "sequence_id": sequence.id,
            "contact_id": self.id,
            "status": "active",
            "enrolled_at": self.now,
            "exited_at": None,
            "seq": len(history) + 1,
        }
        history.append(row)
        self._enrollment_inserts[row["id"]] = row
        self.log("enrolled", {"sequence": sequence.slug, **(via or {})})
        return True, enrollment_view(row, sequence.slug)

    def unenroll(
        self, sequence: SequenceInfo, via: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """End the active enrollment (``exited``); None when there was none."""
        active = [row for row in self._history(sequence) if row["status"] == "active"]
        if not active:
            return None
        row = active[-1]
        row.update(status="exited", exited_at=self.now)  # also a pending insert's row
        if row["id"] not in self._enrollment_inserts:
            self._enrollment_exits.add(row["id"])
        self.log("unenrolled", {"sequence": sequence.slug, **(via or {})})
        return enrollment_view(row, sequence.slug)

    def finish(self) -> dict[str, Any]:
        """Write what changed, parents first; the contact as the API shows it."""
        with pipelined(self.connection):
            self._write()
        return contact_view(self.values, list(self.tags().values()))

    def _write(self) -> None:
        execute = self.connection.execute
        if self.created:
            execute(_INSERT_CONTACT, self.values)
        else:
            if self.touched:
                self.set("updated_at", self.now)
            if self._changed_columns:
                execute(_UPDATE_CONTACT, {"contact_key": self.id, **self._changed_columns})
        self._changed_columns = {}
        for tag_id in self._link_deletes:
            execute(_DELETE_LINK, {"contact_key": self.id, "tag_key": tag_id})
        if self._link_inserts:
            execute(_INSERT_LINK, list(self._link_inserts.values()))
        for enrollment_id in self._enrollment_exits:
            exited = {"enrollment_key": enrollment_id, "status": "exited", "exited_at": self.now}
            execute(_EXIT_ENROLLMENT, exited)
        if self._enrollment_inserts:
            execute(_INSERT_ENROLLMENT, list(self._enrollment_inserts.values()))
        if self._activity:
            execute(_INSERT_ACTIVITY, self._activity)
        self._link_deletes, self._link_inserts = set(), {}
        self._enrollment_exits, self._enrollment_inserts = set(), {}
        self._activity = []


def get_or_create_tag(
    connection: Connection, name: str, now: datetime, cache: ServerContext | None = None
) -> tuple[dict[str, str], bool]:
    """The tag named ``name`` in any case, created with this spelling if new.

    With ``cache``, tags found in the database are remembered by name (only committed rows are
    found, so a remembered id is never one a rolled-back transaction made up).
    """
    key = name.lower()

    def load() -> dict[str, str] | None:
        row = connection.execute(_FIND_TAG, {"name_key_value": key}).first()
        return None if row is None else {"id": row.id, "name": row.name}

    found = cache.cached(f"{TAGS_CACHE}:{key}", load) if cache is not None else load()
    if found is not None:
        return found, False
    tag = {"id": new_id(), "name": name}
    # A concurrent creator's row makes this fail; the transaction is then retried.
    connection.execute(_INSERT_TAG, {**tag, "name_key": key, "created_at": now})
    return tag, True
