-- Topics whose subscribers end after the update (JSON array; NULL when none): how a server
-- built on the hub revokes access at an exact position.
ALTER TABLE updates ADD COLUMN closes TEXT;
