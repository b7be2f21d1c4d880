"""Automations at run time and over the API (CONTRACT.md §6).

The pure engine (``automations.evaluate``) says which rules fire on a change set; this module loads
the stored rules, applies each firing's actions to the contact inside the upsert's transaction, logs
every firing with each action's outcome (``applied`` or ``no_op``), and serves ``/automations/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from meisa_sync.server import idempotency
from meisa_sync.server.auth import TokenCaller
from meisa_sync.server.automations import (
    AddTag,
    Enroll,
    Firing,
    RemoveTag,
    Rule,
    RuleError,
    RuleSpec,
    Unenroll,
    parse_rule,
)
from meisa_sync.server.body import Body, documented_body
from meisa_sync.server.context import ServerContext, get_context
from meisa_sync.server.editor import ContactEditor, SequenceInfo, find_sequence
from meisa_sync.server.errors import ERROR_RESPONSES, ApiError, validation_error
from meisa_sync.server.models import Automation, Sequence
from meisa_sync.server.routing import route

__all__ = ["apply_firings", "create_rule", "current_rules", "load_rules", "router", "save_rule"]


def _rule(row: Automation) -> Rule:
    return Rule.from_stored(
        id=row.id,
        created_seq=row.created_seq,
        name=row.name,
        enabled=row.enabled,
        position=row.position,
        trigger=row.trigger,
        actions=row.actions,
    )


def load_rules(session: Session) -> list[Rule]:
    rows = session.scalars(
        select(Automation)
        .where(Automation.enabled.is_(True))
        .order_by(Automation.position, Automation.created_seq)
    )
    return [_rule(row) for row in rows]


def current_rules(context: ServerContext, session: Session) -> list[Rule]:
    """The enabled rules, from the cache the automation endpoints invalidate."""
    return context.cached("rules", lambda: load_rules(session))


def _sequences(context: ServerContext, connection: Connection) -> dict[str, SequenceInfo]:
    def load() -> dict[str, SequenceInfo]:
        rows = connection.execute(select(Sequence.id, Sequence.slug, Sequence.allow_reenrollment))
        return {row.slug: SequenceInfo(row.id, row.slug, row.allow_reenrollment) for row in rows}

    return context.cached("sequences", load)


def _apply(
    context: ServerContext, editor: ContactEditor, action: object, via: Mapping[str, Any]
) -> bool:
    """Apply one action; whether it changed anything."""
    if isinstance(action, AddTag):
        return editor.add_tag(action.tag, via)
    if isinstance(action, RemoveTag):
        return editor.remove_tag(action.tag, via)
    if isinstance(action, (Enroll, Unenroll)):
        sequence = _sequences(context, editor.connection).get(action.sequence)
        if sequence is None:
            sequence = find_sequence(editor.connection, action.sequence)
        if sequence is None:  # deleted since the rule was saved
            return False
        if isinstance(action, Enroll):
            return editor.enroll(sequence, via)[0]
        return editor.unenroll(sequence, via) is not None
    raise TypeError(f"unknown action {action!r}")


def apply_firings(context: ServerContext, editor: ContactEditor, firings: list[Firing]) -> None:
    """Apply the firings in order, logging each with every action's outcome."""
    for firing in firings:
        rule = firing.rule
        via = {"rule_id": rule.id, "rule_name": rule.name}
        trigger = (
            {"event": "contact_created"}
            if firing.field is None
            else {"field": firing.field, "from": firing.old, "to": firing.new}
        )
        # Logged before its actions run, so the log reads: the firing, then what it did.
        entry = editor.log("automation", {**via, "trigger": trigger, "actions": []})
        for action in firing.actions:
            applied = _apply(context, editor, action, via)
            result = "applied" if applied else "no_op"
            entry["actions"].append({**action.to_json(), "result": result})


def _known_sequences(session: Session) -> set[str]:
    return set(session.scalars(select(Sequence.slug)))


def _parse(session: Session, data: Any) -> RuleSpec:
    if not isinstance(data, dict):
        raise validation_error("body", "a rule is a JSON object")
    try:
        return parse_rule(data, known_sequences=_known_sequences(session))
    except RuleError as exc:
        raise validation_error(exc.field, exc.reason) from None


def save_rule(session: Session, row: Automation, spec: RuleSpec, now: datetime) -> None:
    row.name = spec.name
    row.enabled = spec.enabled
    row.position = spec.position
    stored = spec.to_json()
    row.trigger = stored["trigger"]
    row.actions = stored["actions"]
    row.updated_at = now


def create_rule(session: Session, spec: RuleSpec, now: datetime) -> Automation:
    latest = session.scalar(select(func.max(Automation.created_seq)))
    row = Automation(created_seq=(latest or 0) + 1, created_at=now)
    save_rule(session, row, spec, now)
    session.add(row)
    session.flush()
    return row


def rule_json(row: Automation) -> dict[str, Any]:
    return _rule(row).to_json()


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    enabled: bool = True
    position: int = 0
    trigger: dict[str, Any]
    actions: list[dict[str, Any]]


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    enabled: bool | None = None
    position: int | None = None
    trigger: dict[str, Any] | None = None
    actions: list[dict[str, Any]] | None = None


class RuleOut(BaseModel):
    id: str
    name: str
    enabled: bool
    position: int
    trigger: dict[str, Any]
    actions: list[dict[str, Any]]


router = APIRouter(tags=["automations"])
_auth = {**ERROR_RESPONSES["common"], **ERROR_RESPONSES["auth"]}
_write = {**_auth, **ERROR_RESPONSES["body"], **ERROR_RESPONSES["conflict"]}


def _row_or_404(session: Session, automation_id: str) -> Automation:
    row = session.get(Automation, automation_id)
    if row is None:
        raise ApiError(404, "not_found", f"no automation with id {automation_id}")
    return row


@route(router, "GET", "/automations/", response_model=list[RuleOut], responses=_auth)
def list_automations(request: Request, _principal: TokenCaller) -> Any:
    """Every rule, in the order they run."""
    context = get_context(request)
    return context.db.transaction(
        lambda s: [
            rule_json(row)
            for row in s.scalars(
                select(Automation).order_by(Automation.position, Automation.created_seq)
            )
        ]
    )


@route(
    router,
    "POST",
    "/automations/",
    status_code=201,
    response_model=RuleOut,
    openapi_extra=documented_body(RuleIn),
    responses=_write,
)
def create_automation(
    request: Request,
    principal: TokenCaller,
    body: Body,
) -> Response:
    """Create a rule; 400 naming the field when it is malformed or names an unknown sequence."""
    context = get_context(request)

    def produce() -> idempotency.Outcome:
        def work(session: Session) -> idempotency.Outcome:
            spec = _parse(session, body.data)
            return 201, rule_json(create_rule(session, spec, context.now()))

        try:
            return context.db.transaction(work)
        finally:
            context.invalidate("rules")

    return idempotency.respond(request, principal, body, produce)


@route(
    router,
    "GET",
    "/automations/{automation_id}/",
    response_model=RuleOut,
    responses={**_auth, **ERROR_RESPONSES["not_found"]},
)
def get_automation(automation_id: str, request: Request, _principal: TokenCaller) -> Any:
    """One rule."""
    context = get_context(request)
    return context.db.transaction(lambda s: rule_json(_row_or_404(s, automation_id)))


@route(
    router,
    "PATCH",
    "/automations/{automation_id}/",
    response_model=RuleOut,
    openapi_extra=documented_body(RulePatch),
    responses={**_write, **ERROR_RESPONSES["not_found"]},
)
def update_automation(
    automation_id: str,
    request: Request,
    _principal: TokenCaller,
    body: Body,
) -> Any:
    """Change some of a rule's parts; the result is validated as a whole."""
    context = get_context(request)

    def work(session: Session) -> dict[str, Any]:
        row = _row_or_404(session, automation_id)
        if not isinstance(body.data, dict):
            raise validation_error("body", "a rule patch is a JSON object")
        merged = {**rule_json(row), **body.data}
        merged.pop("id", None)
        if "id" in body.data:
            raise validation_error("id", "cannot be changed")
        save_rule(session, row, _parse(session, merged), context.now())
        session.flush()
        return rule_json(row)

    try:
        return context.db.transaction(work)
    finally:
        context.invalidate("rules")


@route(
    router,
    "DELETE",
    "/automations/{automation_id}/",
    status_code=204,
    response_class=Response,
    responses={**_auth, **ERROR_RESPONSES["not_found"]},
)
def delete_automation(automation_id: str, request: Request, _principal: TokenCaller) -> Response:
    """Delete a rule; its past firings stay in the activity logs."""
    context = get_context(request)
    try:
        context.db.transaction(lambda s: s.delete(_row_or_404(s, automation_id)))
    finally:
        context.invalidate("rules")
    return Response(status_code=204)
