-- `jetmon sites import` is idempotent (docs/api.md): a row whose URL is already one of the
-- tenant's HTTP checks updates that check. Finding them by target needs this index.
CREATE INDEX checks_target ON checks(target);
