"""``meisa-sync demo`` from start to end: a server, the application, the story, the report."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from meisa_sync.demo.dashboard import ContactView, Dashboard
from meisa_sync.demo.server import (
    DEMO_KEY,
    DEMO_PASSWORD,
    DEMO_PER_MINUTE,
    DEMO_USERNAME,
    running_server,
)
from meisa_sync.demo.story import (
    STORY_USERS,
    DemoApp,
    DemoSummary,
    describe,
    play_crowd,
    play_story,
)

__all__ = ["run_demo"]


def run_demo(
    *, users: int = 1000, keep: Path | None = None, say: Callable[[str], None] = print
) -> tuple[DemoSummary, dict[str, ContactView]]:
    """Play the demo in ``keep`` (a temporary folder when None); return its summary and contacts."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="meisa-demo-") as temporary:
        folder = keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        with running_server(folder / "meisa-server.db") as root_url:
            base_url = f"{root_url}/api/v1"
            say(f"Meisa reference server on {root_url} with the seed's four automations.")
            say(
                f"Its API key allows {DEMO_PER_MINUTE:,} requests a minute so the demo need not "
                "wait; a real key allows 60 a minute, and the worker paces itself to it."
            )
            app = DemoApp(folder, base_url, DEMO_KEY)
            try:
                play_story(app, say)
                play_crowd(app, users, say)
            finally:
                app.close()
            with Dashboard(base_url, DEMO_USERNAME, DEMO_PASSWORD) as dashboard:
                contacts = {email: dashboard.contact(email) for email in STORY_USERS}
                total = dashboard.count_contacts()
        summary = app.summary
    seconds = time.perf_counter() - started
    say("")
    for contact in contacts.values():
        if contact is not None:
            say("\n".join(describe(contact)))
    report = summary.drain
    say("")
    say(f"contacts in Meisa:  {total}")
    say(f"saves:              {summary.saves}")
    say(f"change records:     {report.records}")
    say(f"requests sent:      {report.requests}")
    say(f"changes coalesced:  {report.coalesced_records}")
    say(f"unchanged, skipped: {report.unchanged}")
    say(f"dead records:       {report.dead_records}")
    say(f"time taken:         {seconds:.1f} s")
    if keep is not None:
        say(f"kept in {keep}: app.db, meisa-server.db (log in as {DEMO_USERNAME}/{DEMO_PASSWORD})")
    return summary, {email: c for email, c in contacts.items() if c is not None}
