"""The schema check reads the migrations' head without Alembic, and agrees with it."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from workflow_engine.db.migrate import alembic_config, head_revisions


def test_the_head_read_from_the_scripts_is_alembics() -> None:
    scripts = ScriptDirectory.from_config(alembic_config(make_url("sqlite://")))
    assert head_revisions() == frozenset(scripts.get_heads())
