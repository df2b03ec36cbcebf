"""The PostgreSQL side of the event log's hash chain (see `events/chain.py`).

A `BEFORE INSERT` trigger fills `prev_hash` and `hash` of every row, whoever inserts it — the
Python append path and the run transitions' SQL functions alike — so there is one
implementation per database. It reads the predecessor (version - 1, by the unique key the
version check uses); rows earlier in the same multi-row INSERT are visible to it, as a
volatile trigger sees what its statement did before. The same content function recomputes
hashes when the log is verified.
"""

from __future__ import annotations

CONTENT_FUNCTION = r"""
CREATE OR REPLACE FUNCTION workflow_engine_event_content(
    p_event_id uuid, p_tenant_id uuid, p_aggregate_type text, p_aggregate_id text,
    p_version integer, p_event_type text, p_schema_version integer, p_data jsonb,
    p_metadata jsonb, p_recorded_at timestamptz
) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT sha256(convert_to(concat_ws(chr(31),
        p_event_id::text, p_tenant_id::text, p_aggregate_type, p_aggregate_id,
        p_version::text, p_event_type, p_schema_version::text, p_data::text, p_metadata::text,
        (extract(epoch FROM p_recorded_at) * 1000000)::bigint::text), 'UTF8'))
$fn$
"""

TRIGGER_FUNCTION = r"""
CREATE OR REPLACE FUNCTION workflow_engine_chain_event() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.version = 1 THEN
        NEW.prev_hash := '\x0000000000000000000000000000000000000000000000000000000000000000';
    ELSE
        SELECT e.hash INTO NEW.prev_hash FROM events e
        WHERE e.tenant_id = NEW.tenant_id AND e.aggregate_id = NEW.aggregate_id
          AND e.version = NEW.version - 1;
    END IF;
    NEW.hash := sha256(NEW.prev_hash || workflow_engine_event_content(
        NEW.event_id, NEW.tenant_id, NEW.aggregate_type, NEW.aggregate_id, NEW.version,
        NEW.event_type, NEW.schema_version, NEW.data, NEW.metadata, NEW.recorded_at));
    RETURN NEW;
END
$fn$
"""

TRIGGER = """
CREATE TRIGGER events_hash_chain BEFORE INSERT ON events
FOR EACH ROW EXECUTE FUNCTION workflow_engine_chain_event()
"""

# What `verify` compares each stored hash with.
RECOMPUTED_HASH = """sha256(coalesce(prev_hash, '') || workflow_engine_event_content(
    event_id, tenant_id, aggregate_type, aggregate_id, version, event_type, schema_version,
    data, metadata, recorded_at))"""
