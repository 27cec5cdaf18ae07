-- Kept results carry their words: the result's flags (an advisory redirect), its note (a
-- probe-safety refusal in a sentence) and its redirect chain (JSON [[status, url], ...]).
-- Advisory results (tls_deprecated, a redirect alert) are kept beside failures.
ALTER TABLE recent_failures ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE recent_failures ADD COLUMN note TEXT;
ALTER TABLE recent_failures ADD COLUMN redirect_chain TEXT;
