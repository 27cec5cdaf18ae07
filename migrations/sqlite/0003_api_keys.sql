-- API keys: a short visible prefix of the token (so `jetmon keys list` can tell keys apart
-- without storing the token) and the key that replaced this one in a rotation.
ALTER TABLE api_keys ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN replaced_by INTEGER;
