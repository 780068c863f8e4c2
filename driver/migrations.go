package driver

import "io/fs"

// MigrationProvider is implemented by a driver for a database other than
// Postgres (SQLite), whose schema must be written in its own SQL. Package
// migrate then reads the migration lines from MigrationFS instead of its
// embedded Postgres files.
type MigrationProvider interface {
	// MigrationFS holds one directory per migration line, named as the
	// line ("main", "millrace"), with files NNN_name.up.sql and
	// NNN_name.down.sql numbered as the Postgres line's versions (a
	// version with nothing to do in the dialect is a file of comments),
	// so that river_migration records the same versions on every
	// database. "{{schema}}" in the SQL is replaced by the quoted schema
	// and a dot, or by nothing for the empty schema.
	MigrationFS() fs.FS
}
