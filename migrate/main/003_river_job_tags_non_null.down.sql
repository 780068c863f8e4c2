ALTER TABLE {{schema}}river_job ALTER COLUMN tags DROP NOT NULL;
ALTER TABLE {{schema}}river_job ALTER COLUMN tags DROP DEFAULT;
