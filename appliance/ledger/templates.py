"""Message templates: one row per version, the latest live one used (appliance/sms_templates.py
holds what a template is; this module only keeps them).

A PUT inserts the next version instead of rewriting a row, so a message's `template_version`
always names the text it was rendered from. DELETE marks every version of the name; a later
POST of that name starts after its last version (a message's name + version stays unique).
Every write and its audit row are one transaction: two PUTs at once cannot both write v2.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time

from appliance.ledger.connection import Connection
from appliance.ledger.dialect import fetch_all, fetch_one
from appliance.ledger.errors import Conflict, NotFound
from appliance.ledger.keys import insert_audit
from appliance.ledger.models import Actor
from appliance.sms_templates import TemplateDraft, TemplateRecord, new_template, revise
from appliance.windows import window_from_json

MAX_TEMPLATES = 1000  # live names; the list is answered whole

# The latest version of each live name (a deleted name has deleted_at on every version).
_LATEST = (
    "SELECT t.* FROM templates t JOIN (SELECT name, max(version) AS version FROM templates "
    "WHERE deleted_at IS NULL GROUP BY name) latest ON t.name = latest.name AND t.version = latest.version"
)

# The latest live version of one name.
_LIVE = "SELECT * FROM templates WHERE name = ? AND deleted_at IS NULL ORDER BY version DESC LIMIT 1"


def template_row(r: sqlite3.Row) -> TemplateRecord:
    allowed = r["allowed_keys"]
    window = r["send_window"]
    return TemplateRecord(
        name=r["name"],
        body=r["body"],
        version=int(r["version"]),
        allowed_keys=None if allowed is None else tuple(json.loads(allowed)),
        window=window_from_json(None if window is None else json.loads(window)),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _describe(record: TemplateRecord) -> str:
    """The audit row's detail: what changed, never the text itself (it may hold personal data)."""
    allowed = (
        "any key with send" if record.allowed_keys is None else ",".join(record.allowed_keys) or "admin only"
    )
    window = "" if record.window is None else f"; window {record.window.describe()}"
    return f"v{record.version}, {len(record.body)} characters; allowed: {allowed}{window}"


class Templates(Connection):
    """Named, versioned message templates."""

    async def template(self, name: str) -> TemplateRecord | None:
        """The latest live version of the template `name`, or None."""
        row = await fetch_one(self.rdb, _LIVE, (name,))
        return None if row is None else template_row(row)

    async def list_templates(self) -> list[TemplateRecord]:
        """The latest live version of every template, by name."""
        rows = await fetch_all(self.rdb, _LATEST + " ORDER BY t.name", ())
        return [template_row(r) for r in rows]

    async def save_template(
        self, draft: TemplateDraft, *, create_only: bool, actor: Actor | None = None
    ) -> tuple[TemplateRecord, bool]:
        """Write the next version of `draft.name`: (record, created).

        `create_only` (POST): Conflict when the name is live. Otherwise (PUT) a new name is
        version 1 and a live one gets version + 1; a stale `draft.expected_version` raises
        sms_templates.TemplateError (409 version_conflict). Conflict also past MAX_TEMPLATES names.
        """
        now = time.time()
        async with self._tx() as db:
            row = await fetch_one(db, _LIVE, (draft.name,))
            if row is not None and create_only:
                raise Conflict(f"template {draft.name!r} exists (v{row['version']}): PUT changes it")
            if row is None:
                count = await fetch_one(
                    db, "SELECT count(DISTINCT name) AS n FROM templates WHERE deleted_at IS NULL", ()
                )
                if count is not None and int(count["n"]) >= MAX_TEMPLATES:
                    raise Conflict(f"{MAX_TEMPLATES} templates exist already: delete one first")
                record = new_template(draft, now=now)
                # A name deleted before continues after its last version.
                last = await fetch_one(
                    db, "SELECT max(version) AS v FROM templates WHERE name = ?", (draft.name,)
                )
                if last is not None and last["v"] is not None:
                    record = dataclasses.replace(record, version=int(last["v"]) + 1)
            else:
                record = revise(template_row(row), draft, now=now)
            await db.execute(
                "INSERT INTO templates (name, version, body, allowed_keys, send_window, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.name,
                    record.version,
                    record.body,
                    None if record.allowed_keys is None else json.dumps(list(record.allowed_keys)),
                    None if record.window is None else json.dumps(record.window.to_json()),
                    record.created_at,
                    record.updated_at,
                ),
            )
            if actor is not None:
                action = "template_create" if row is None else "template_update"
                await insert_audit(db, actor, action, f"template {record.name}", _describe(record), now)
        return record, row is None

    async def delete_template(self, name: str, *, actor: Actor | None = None) -> TemplateRecord:
        """Mark every version of `name` deleted (messages keep their name + version); NotFound when
        no live template has that name. Returns the version that was current."""
        now = time.time()
        async with self._tx() as db:
            row = await fetch_one(db, _LIVE, (name,))
            if row is None:
                raise NotFound(name)
            await db.execute(
                "UPDATE templates SET deleted_at = ? WHERE name = ? AND deleted_at IS NULL", (now, name)
            )
            record = template_row(row)
            if actor is not None:
                await insert_audit(
                    db, actor, "template_delete", f"template {name}", f"was v{record.version}", now
                )
        return record
