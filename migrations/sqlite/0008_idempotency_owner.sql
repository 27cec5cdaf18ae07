-- Idempotency that survives a crash (docs/api.md): an in-flight row names the host whose
-- control runs it and holds a lease; a control starting on that host releases what its
-- previous process left in flight, and any expired lease may be taken over. A stored answer
-- keeps its Location and content type for replays.
ALTER TABLE idempotency_keys ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE idempotency_keys ADD COLUMN location TEXT;
ALTER TABLE idempotency_keys ADD COLUMN content_type TEXT;
