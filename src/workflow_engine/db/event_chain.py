"""The PostgreSQL side of the event log's hash chain (see `events/chain.py`).

A `BEFORE INSERT` trigger fills `prev_hash` and `hash` of every row, whoever inserts it — the
Python append path and the run transitions' SQL functions alike — so there is one
implementation per database. It reads the predecessor (version - 1, by the unique key the
version check uses); rows earlier in the same multi-row INSERT are visible to it, as a
volatile trigger sees what its statement did before. Verification recomputes hashes with the
same expression over the stored columns.

The content expression is written out in the trigger rather than called as a SQL function: a
function call from PL/pgSQL is not inlined and cost a third of the trigger's time, which
matters because a run's transitions hold its row lock while they append.
"""

from __future__ import annotations


def _hash(row: str) -> str:
    """SHA-256(prev_hash || SHA-256(content)) of the row whose columns start with `row`."""
    return f"""sha256(coalesce({row}prev_hash, '') || sha256(convert_to(concat_ws(chr(31),
        {row}event_id::text, {row}tenant_id::text, {row}aggregate_type, {row}aggregate_id,
        {row}version::text, {row}event_type, {row}schema_version::text, {row}data::text,
        {row}metadata::text, (extract(epoch FROM {row}recorded_at) * 1000000)::bigint::text),
        'UTF8')))"""


TRIGGER_FUNCTION = rf"""
CREATE OR REPLACE FUNCTION workflow_engine_chain_event() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.version = 1 THEN
        NEW.prev_hash := '\x0000000000000000000000000000000000000000000000000000000000000000';
    ELSE
        SELECT e.hash INTO NEW.prev_hash FROM events e
        WHERE e.tenant_id = NEW.tenant_id AND e.aggregate_id = NEW.aggregate_id
          AND e.version = NEW.version - 1;
        IF NEW.prev_hash IS NULL THEN  -- no predecessor: leave the row unchained (verify says)
            RETURN NEW;
        END IF;
    END IF;
    NEW.hash := {_hash("NEW.")};
    RETURN NEW;
END
$fn$
"""  # noqa: S608 (our own constant text, no input)

TRIGGER = """
CREATE TRIGGER events_hash_chain BEFORE INSERT ON events
FOR EACH ROW EXECUTE FUNCTION workflow_engine_chain_event()
"""

# What `verify` compares each stored hash with.
RECOMPUTED_HASH = _hash("")
