"""The claim index gains ``available_at``: the claim reads only the range due by now, so records
backing off after failures no longer slow it down (the same index as ``meisa_sync_sqlalchemy``)."""

from __future__ import annotations

from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies: ClassVar = [("meisa_sync", "0001_initial")]

    operations: ClassVar = [
        migrations.RemoveIndex(model_name="outboxrecord", name="meisa_sync_outbox_claim_idx"),
        migrations.AddIndex(
            model_name="outboxrecord",
            index=models.Index(
                fields=["state", "priority", "available_at", "id"],
                name="meisa_sync_outbox_due_idx",
            ),
        ),
    ]
