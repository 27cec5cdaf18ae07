-- An attempt is logged once per (delivery, attempt number): the deliverer writes a batch of
-- them in one statement with ON CONFLICT DO NOTHING, so a commit whose answer was lost can be
-- tried again without logging an attempt twice.
DELETE FROM delivery_attempts WHERE id NOT IN
    (SELECT MIN(id) FROM delivery_attempts GROUP BY delivery_id, attempt);
DROP INDEX delivery_attempts_delivery;
CREATE UNIQUE INDEX delivery_attempts_once ON delivery_attempts(delivery_id, attempt);

