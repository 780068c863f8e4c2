package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/millrace/millrace/driver"
)

// ErrNotMigrated is returned (wrapped in a *NotMigratedError) when the
// client's schema lacks millrace's tables, or was migrated to an older
// version than this millrace needs. Migrate it with `millrace migrate up`
// or the migrate package, then retry.
var ErrNotMigrated = errors.New("database is not migrated")

// RequiredMigrationVersion is the version of River's migration line "main"
// this millrace's SQL needs: every version from 1 to it must be applied.
// It equals migrate's latest version.
const RequiredMigrationVersion = 8

// RequiredMillraceMigrationVersion is the version of millrace's own
// migration line "millrace" a working client needs (its heartbeat table and
// what later versions add): every version from 1 to it must be applied.
// Inserting needs only line main.
const RequiredMillraceMigrationVersion = 8

// The migration lines, as the migrate package names them.
const (
	migrationLineMain     = "main"
	migrationLineMillrace = "millrace"
)

// NotMigratedError says which schema is not migrated and what it lacks.
// errors.Is(err, ErrNotMigrated) is true for it.
type NotMigratedError struct {
	// Schema is the client's schema ("" for the connection's search_path).
	Schema string
	// SchemaMissing is true when the schema itself does not exist.
	SchemaMissing bool
	// Missing lists the versions of Line not applied, ascending; empty
	// when they could not be read.
	Missing []int
	// MissingMillrace lists the versions of line "millrace" not applied
	// (checked when a client starts working), ascending.
	MissingMillrace []int
	// Cause is the database error that revealed it, if any.
	Cause error
}

func (e *NotMigratedError) Error() string {
	where := "the connection's default schema (search_path)"
	flag := ""
	if e.Schema != "" {
		where = fmt.Sprintf("schema %q", e.Schema)
		flag = " --schema " + e.Schema
	}
	var b strings.Builder
	b.WriteString(ErrNotMigrated.Error())
	b.WriteString(": ")
	switch {
	case e.SchemaMissing:
		fmt.Fprintf(&b, "%s does not exist; create it (CREATE SCHEMA %s) and migrate it", where, e.Schema)
	case len(e.Missing) == RequiredMigrationVersion:
		fmt.Fprintf(&b, "%s has no millrace (River) tables; migrate it", where)
	case len(e.Missing) > 0:
		fmt.Fprintf(&b, "%s lacks version%s %s of migration line main (this millrace needs 1 to %d); migrate it",
			where, plural(len(e.Missing)), joinInts(e.Missing), RequiredMigrationVersion)
	case len(e.MissingMillrace) > 0:
		fmt.Fprintf(&b, "%s lacks version%s %s of migration line millrace (a working client needs 1 to %d: its heartbeat table and more); migrate it",
			where, plural(len(e.MissingMillrace)), joinInts(e.MissingMillrace), RequiredMillraceMigrationVersion)
	default:
		fmt.Fprintf(&b, "%s lacks millrace's tables or some of their versions; migrate it", where)
	}
	fmt.Fprintf(&b, " with `millrace migrate up --database-url URL%s`, or from Go with "+
		"migrate.MigrateAll(ctx, driver, &migrate.Config{Schema: %q}, migrate.DirectionUp, nil)", flag, e.Schema)
	if e.Cause != nil {
		fmt.Fprintf(&b, " (%v)", e.Cause)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotMigrated) true.
func (e *NotMigratedError) Is(target error) bool { return target == ErrNotMigrated }

// Unwrap returns the database error that revealed it, if any.
func (e *NotMigratedError) Unwrap() error { return e.Cause }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// missingVersions reads a line's applied versions and returns those of
// 1..required that are not, and how many are applied.
func missingVersions(ctx context.Context, exec driver.Executor, schema, line string, required int) ([]int, int, error) {
	applied, err := exec.MigrationGetAll(ctx, &driver.MigrationParams{Schema: schema, Line: line})
	if err != nil {
		return nil, 0, fmt.Errorf("read applied migrations of line %s: %w", line, err)
	}
	have := make(map[int]bool, len(applied))
	for _, m := range applied {
		have[m.Version] = true
	}
	var missing []int
	for v := 1; v <= required; v++ {
		if !have[v] {
			missing = append(missing, v)
		}
	}
	return missing, len(applied), nil
}

// checkMigrated reads the applied versions through exec and returns a
// *NotMigratedError when any of 1..RequiredMigrationVersion is missing (and,
// with working set, any of 1..RequiredMillraceMigrationVersion of line
// millrace), nil when all are there, or the error of the query itself.
func checkMigrated(ctx context.Context, exec driver.Executor, schema string, working bool) error {
	missing, applied, err := missingVersions(ctx, exec, schema, migrationLineMain, RequiredMigrationVersion)
	if err != nil {
		return err
	}
	var missingMillrace []int
	if working && len(missing) == 0 {
		if missingMillrace, _, err = missingVersions(ctx, exec, schema, migrationLineMillrace, RequiredMillraceMigrationVersion); err != nil {
			return err
		}
	}
	if len(missing) == 0 && len(missingMillrace) == 0 {
		return nil
	}
	nm := &NotMigratedError{Schema: schema, Missing: missing, MissingMillrace: missingMillrace}
	if applied == 0 && schema != "" {
		if exists, err := exec.SchemaExists(ctx, schema); err == nil && !exists {
			nm.SchemaMissing = true
		}
	}
	return nm
}

// checkMigratedOnStart runs checkMigrated once as Start begins, for both
// lines (a working client needs millrace's own: heartbeats, domain
// leaders). Only a definite answer fails Start: when the check itself
// cannot run (the database is down, say), it is logged and Start goes on
// as before, its services retrying.
func (c *Client[TTx]) checkMigratedOnStart(ctx context.Context) error {
	err := checkMigrated(ctx, c.driver.GetExecutor(), c.config.Schema, true)
	if err == nil || errors.Is(err, ErrNotMigrated) {
		return err
	}
	c.config.Logger.WarnContext(ctx, "millrace: could not check the schema's migrations at start", "error", err)
	return nil
}

// sqlStater is what a driver's database error offers (pgconn.PgError does).
type sqlStater interface{ SQLState() string }

// explainSchemaError turns a database error caused by missing tables,
// types, columns or functions of millrace's schema into a
// *NotMigratedError, checking the applied versions on the pool (the
// caller's transaction is aborted by then). Any other error, and one the
// check finds all versions applied for, is returned unchanged. Without a
// pool, or when the check fails, a missing river_* table or type (or
// schema) is enough.
func (c *Client[TTx]) explainSchemaError(ctx context.Context, err error) error {
	var st sqlStater
	if err == nil || !errors.As(err, &st) {
		return err
	}
	switch st.SQLState() {
	case "42P01", "42704", "42703", "42883", "3F000": // undefined table, object, column, function; invalid schema
	default:
		return err
	}
	// The versions decide; the check runs only on these errors.
	if c.driver.PoolIsSet() {
		checkErr := checkMigrated(ctx, c.driver.GetExecutor(), c.config.Schema, false)
		var nm *NotMigratedError
		if errors.As(checkErr, &nm) {
			nm.Cause = err
			return nm
		}
		if checkErr == nil {
			return err // migrated after all: the error is something else
		}
	}
	// No answer from the versions: trust a missing river_* table or type.
	if code := st.SQLState(); code == "3F000" || (code == "42P01" || code == "42704") && strings.Contains(err.Error(), "river") {
		return &NotMigratedError{Schema: c.config.Schema, Cause: err}
	}
	return err
}
