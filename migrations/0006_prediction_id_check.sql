-- 0006_prediction_id_check: the same CHECK on prediction ids, without a counted repetition.
--
-- PostgreSQL's regular expressions unroll `{26}`: matching '^[0-9a-hjkmnp-tv-z]{26}$' took about
-- 23,800 instructions an id (callgrind, 20,000 ids), and the CHECK runs on every insert. The length
-- test with '^[...]+$' accepts exactly the same ids for about 3,400 (bench/README.md, "What
-- PostgreSQL spends on an insert").
ALTER TABLE predictions
  DROP CONSTRAINT predictions_id_check,
  ADD CONSTRAINT predictions_id_check CHECK (length(id) = 26 AND id ~ '^[0-9a-hjkmnp-tv-z]+$');
