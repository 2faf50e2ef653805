-- Installation-wide secrets (the manager's page-token key): made at random
-- by the first process that needs one, shared by every process on the store.
CREATE TABLE secrets (
	name TEXT PRIMARY KEY,
	value BYTEA NOT NULL
);
