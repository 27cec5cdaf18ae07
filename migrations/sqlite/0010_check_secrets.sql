-- Secrets at rest (docs/notifications.md): a check's custom request headers and credentials,
-- as one value sealed by jetmon-secrets (AES-256-GCM, key id inside); NULL when it has none.
ALTER TABLE checks ADD COLUMN sealed TEXT;
