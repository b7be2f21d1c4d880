"""The reference Meisa server: ``create_app(...)`` returns the ASGI app (``meisa-sync serve``).

Needs the ``server`` extra: ``pip install 'meisa-sync[server]'``.
"""

from __future__ import annotations

from meisa_sync.server.app import create_app

__all__ = ["create_app"]
