"""Routes served with and without their trailing slash, never by redirect (clients POST)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter

__all__ = ["route"]

F = TypeVar("F", bound=Callable[..., Any])


def route(router: APIRouter, method: str, path: str, **kwargs: Any) -> Callable[[F], F]:
    """Register the handler at ``path`` (documented) and at ``path`` without its slash (hidden)."""

    def decorator(handler: F) -> F:
        router.add_api_route(path, handler, methods=[method], **kwargs)
        bare = path.rstrip("/")
        if bare != path:
            router.add_api_route(
                bare, handler, methods=[method], **{**kwargs, "include_in_schema": False}
            )
        return handler

    return decorator
