// Package migrate creates and upgrades millrace's tables: River's schema,
// migration line "main", versions 1 to 8, so that River and millrace clients
// can share one database and either migrator sees nothing pending on a
// database the other migrated.
//
// Each version runs in its own transaction together with its river_migration
// row, under a transaction-level advisory lock, so two processes migrating at
// once apply every version exactly once. Users who apply migrations with
// their own tool (goose, atlas, tern, psql) can print the SQL with SQL.
package migrate

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/schemaname"
)

// LineMain is River's migration line, the only one millrace knows so far.
const LineMain = "main"

// Direction is which way to migrate.
type Direction string

// The two directions.
const (
	DirectionUp   Direction = "up"
	DirectionDown Direction = "down"
)

// ErrUnknownVersion is returned (wrapped) for a target version the line does
// not have.
var ErrUnknownVersion = errors.New("unknown migration version")

// ErrDatabaseNewer is returned (wrapped) when the database has versions
// applied that this millrace does not know: it was migrated by a newer River
// or millrace. Upgrade millrace rather than migrating such a database.
var ErrDatabaseNewer = errors.New("database is migrated past the newest version this millrace knows")

// ErrInvalidSchema is returned (wrapped) for a schema name that cannot be
// used. The client's configuration check returns it too.
var ErrInvalidSchema = schemaname.ErrInvalid

//go:embed main/*.sql
var mainFS embed.FS

// Version is one migration version of a line.
type Version struct {
	// Version is the version number, from 1.
	Version int
	// Name is a short description taken from the file name.
	Name string
	// SQLUp applies the version; it contains the schema placeholder until
	// rendered by Migrator.SQL.
	sqlUp string
	// sqlDown reverts it.
	sqlDown string
}

var fileRE = regexp.MustCompile(`^(\d{3})_([a-z0-9_]+)\.(up|down)\.sql$`)

// loadLine reads the embedded versions of the main line, checking that they
// are numbered 1..n without a gap and each has both directions.
func loadLine() ([]Version, error) {
	entries, err := fs.ReadDir(mainFS, "main")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	byNum := map[int]*Version{}
	for _, e := range entries {
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("embedded migration file %q has an unexpected name", e.Name())
		}
		n, _ := strconv.Atoi(m[1])
		body, err := mainFS.ReadFile(path.Join("main", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read embedded migration %q: %w", e.Name(), err)
		}
		v := byNum[n]
		if v == nil {
			v = &Version{Version: n, Name: m[2]}
			byNum[n] = v
		}
		if m[3] == "up" {
			v.sqlUp = string(body)
		} else {
			v.sqlDown = string(body)
		}
	}
	versions := make([]Version, 0, len(byNum))
	for n := 1; n <= len(byNum); n++ {
		v, ok := byNum[n]
		if !ok {
			return nil, fmt.Errorf("embedded migrations skip version %d", n)
		}
		if v.sqlUp == "" || v.sqlDown == "" {
			return nil, fmt.Errorf("embedded migration %d lacks an up or a down file", n)
		}
		versions = append(versions, *v)
	}
	return versions, nil
}

// Config configures a Migrator. The zero value migrates line "main" in the
// connection's default schema.
type Config struct {
	// Schema is the Postgres schema holding River's tables. Empty means
	// unqualified names, that is the connection's search_path (normally
	// public). A given schema must already exist; nothing is created in
	// public. Names match ^[a-zA-Z_][a-zA-Z0-9_]*$, at most 46 characters.
	Schema string
	// Line is the migration line; default and only value so far "main".
	Line string
	// Logger receives one line per applied version; default: discard.
	Logger *slog.Logger
}

// Migrator applies and reverts the versions of a migration line.
type Migrator[TTx any] struct {
	driver   driver.Driver[TTx]
	schema   string
	line     string
	logger   *slog.Logger
	versions []Version
}

// MaxSchemaLength is the longest schema name accepted, so that notification
// channel names ("<schema>.river_leadership") fit Postgres' 63 bytes.
const MaxSchemaLength = schemaname.MaxLength

// ValidateSchema checks a schema name; the empty name is valid (default
// schema). A name is at most MaxSchemaLength bytes of ASCII letters, digits
// and underscores, not starting with a digit.
func ValidateSchema(schema string) error {
	return schemaname.Validate(schema)
}

// New returns a Migrator for the driver.
func New[TTx any](drv driver.Driver[TTx], cfg *Config) (*Migrator[TTx], error) {
	if drv == nil {
		return nil, errors.New("migrate: driver is nil")
	}
	if cfg == nil {
		cfg = &Config{}
	}
	if err := ValidateSchema(cfg.Schema); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	line := cfg.Line
	if line == "" {
		line = LineMain
	}
	if line != LineMain {
		return nil, fmt.Errorf("migrate: unknown migration line %q (known: %q)", line, LineMain)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	versions, err := loadLine()
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return &Migrator[TTx]{driver: drv, schema: cfg.Schema, line: line, logger: logger, versions: versions}, nil
}

// Versions lists every version the line has, ascending.
func (m *Migrator[TTx]) Versions() []Version {
	return slices.Clone(m.versions)
}

// Latest is the newest version the line has.
func (m *Migrator[TTx]) Latest() int { return len(m.versions) }

// render substitutes the schema into a migration's SQL.
func (m *Migrator[TTx]) render(sql string) string {
	prefix := ""
	if m.schema != "" {
		prefix = `"` + m.schema + `".`
	}
	return strings.ReplaceAll(sql, "{{schema}}", prefix)
}

// SQL returns the SQL that takes a database from version from to version to
// (up when to > from, down when to < from), each version wrapped in its own
// BEGIN/COMMIT together with its river_migration bookkeeping, ready for psql
// or another migration tool. from and to are 0..Latest.
func (m *Migrator[TTx]) SQL(from, to int) (string, error) {
	if from < 0 || from > m.Latest() {
		return "", fmt.Errorf("migrate: %w: %d (known 0..%d)", ErrUnknownVersion, from, m.Latest())
	}
	if to < 0 || to > m.Latest() {
		return "", fmt.Errorf("migrate: %w: %d (known 0..%d)", ErrUnknownVersion, to, m.Latest())
	}
	var b strings.Builder
	table := m.render("{{schema}}river_migration")
	if to > from {
		for n := from + 1; n <= to; n++ {
			v := m.versions[n-1]
			fmt.Fprintf(&b, "-- millrace migration line %s version %03d %s (up)\nBEGIN;\n%s\n", m.line, n, v.Name, strings.TrimSpace(m.render(v.sqlUp)))
			// Before version 5 the table has no line column.
			if n < 5 {
				fmt.Fprintf(&b, "INSERT INTO %s (version) VALUES (%d);\n", table, n)
			} else {
				fmt.Fprintf(&b, "INSERT INTO %s (line, version) VALUES ('%s', %d);\n", table, m.line, n)
			}
			b.WriteString("COMMIT;\n\n")
		}
	} else {
		for n := from; n > to; n-- {
			v := m.versions[n-1]
			fmt.Fprintf(&b, "-- millrace migration line %s version %03d %s (down)\nBEGIN;\n%s\n", m.line, n, v.Name, strings.TrimSpace(m.render(v.sqlDown)))
			switch {
			case n == 1: // the table itself is gone
			case n <= 5:
				fmt.Fprintf(&b, "DELETE FROM %s WHERE version = %d;\n", table, n)
			default:
				fmt.Fprintf(&b, "DELETE FROM %s WHERE line = '%s' AND version = %d;\n", table, m.line, n)
			}
			b.WriteString("COMMIT;\n\n")
		}
	}
	return b.String(), nil
}

// Applied lists the versions of the line recorded in the database.
func (m *Migrator[TTx]) Applied(ctx context.Context) ([]*driver.Migration, error) {
	exec := m.driver.GetExecutor()
	if err := m.checkSchema(ctx, exec); err != nil {
		return nil, err
	}
	applied, err := exec.MigrationGetAll(ctx, &driver.MigrationParams{Schema: m.schema, Line: m.line})
	if err != nil {
		return nil, fmt.Errorf("migrate: list applied versions: %w", err)
	}
	return applied, nil
}

// Pending lists the versions of the line not yet applied, ascending.
func (m *Migrator[TTx]) Pending(ctx context.Context) ([]Version, error) {
	applied, err := m.Applied(ctx)
	if err != nil {
		return nil, err
	}
	done := map[int]bool{}
	for _, a := range applied {
		done[a.Version] = true
	}
	var pending []Version
	for _, v := range m.versions {
		if !done[v.Version] {
			pending = append(pending, v)
		}
	}
	return pending, nil
}

// MigrateOpts bounds a migration.
type MigrateOpts struct {
	// TargetVersion is the version to end at.
	//
	// Up: 0 (the default) means the latest version.
	//
	// Down: 0 (the default) means one version below the current one; -1
	// means all the way down, removing every table of the line.
	TargetVersion int
}

// MigrateResult reports what a migration did.
type MigrateResult struct {
	// Direction migrated.
	Direction Direction
	// Versions applied (up) or reverted (down), in the order run, with how
	// long each took.
	Versions []MigrateVersion
}

// MigrateVersion is one version run.
type MigrateVersion struct {
	Version  int
	Name     string
	Duration time.Duration
}

// Migrate migrates the database up or down. Up applies every pending version
// up to the target; down reverts applied versions down to (not including)
// the target. Each version runs in its own transaction. A version another
// process applies (or reverts) meanwhile is skipped, so concurrent
// migrators are safe.
func (m *Migrator[TTx]) Migrate(ctx context.Context, dir Direction, opts *MigrateOpts) (*MigrateResult, error) {
	if opts == nil {
		opts = &MigrateOpts{}
	}
	if opts.TargetVersion < -1 || opts.TargetVersion > m.Latest() || (opts.TargetVersion == -1 && dir != DirectionDown) {
		return nil, fmt.Errorf("migrate: %w: target version %d (known 0..%d)", ErrUnknownVersion, opts.TargetVersion, m.Latest())
	}
	applied, err := m.Applied(ctx)
	if err != nil {
		return nil, err
	}
	current := 0
	for _, a := range applied {
		if a.Version > m.Latest() {
			return nil, fmt.Errorf("migrate: %w: version %d is applied, this millrace knows up to %d", ErrDatabaseNewer, a.Version, m.Latest())
		}
		current = max(current, a.Version)
	}
	res := &MigrateResult{Direction: dir}
	switch dir {
	case DirectionUp:
		target := opts.TargetVersion
		if target == 0 {
			target = m.Latest()
		}
		if target < current {
			return nil, fmt.Errorf("migrate: target version %d is below the current version %d; migrate down instead", target, current)
		}
		for n := 1; n <= target; n++ {
			ran, d, err := m.runVersion(ctx, n, DirectionUp)
			if err != nil {
				return res, err
			}
			if ran {
				res.Versions = append(res.Versions, MigrateVersion{Version: n, Name: m.versions[n-1].Name, Duration: d})
			}
		}
	case DirectionDown:
		target := opts.TargetVersion
		switch target {
		case 0:
			target = max(current-1, 0)
		case -1:
			target = 0
		}
		if target > current {
			return nil, fmt.Errorf("migrate: target version %d is above the current version %d; migrate up instead", target, current)
		}
		for n := current; n > target; n-- {
			ran, d, err := m.runVersion(ctx, n, DirectionDown)
			if err != nil {
				return res, err
			}
			if ran {
				res.Versions = append(res.Versions, MigrateVersion{Version: n, Name: m.versions[n-1].Name, Duration: d})
			}
		}
	default:
		return nil, fmt.Errorf("migrate: unknown direction %q (want %q or %q)", dir, DirectionUp, DirectionDown)
	}
	return res, nil
}

// lockKey is the advisory lock migrators of one schema share.
func (m *Migrator[TTx]) lockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("millrace.migrate\x00" + m.schema + "\x00" + m.line))
	return int64(h.Sum64())
}

// runVersion applies or reverts one version in its own transaction, unless
// it is already in the wanted state once the lock is held.
func (m *Migrator[TTx]) runVersion(ctx context.Context, n int, dir Direction) (ran bool, took time.Duration, err error) {
	start := time.Now()
	v := m.versions[n-1]
	tx, err := m.driver.GetExecutor().Begin(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("migrate: version %d: begin: %w", n, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := tx.PGAdvisoryXactLock(ctx, m.lockKey()); err != nil {
		return false, 0, fmt.Errorf("migrate: version %d: take advisory lock: %w", n, err)
	}
	applied, err := tx.MigrationGetAll(ctx, &driver.MigrationParams{Schema: m.schema, Line: m.line})
	if err != nil {
		return false, 0, fmt.Errorf("migrate: version %d: read applied versions: %w", n, err)
	}
	isApplied := slices.ContainsFunc(applied, func(a *driver.Migration) bool { return a.Version == n })
	if isApplied == (dir == DirectionUp) {
		return false, 0, tx.Rollback(ctx)
	}
	sql := v.sqlUp
	if dir == DirectionDown {
		sql = v.sqlDown
	}
	if body := m.render(sql); hasStatements(body) {
		if err := tx.Exec(ctx, body); err != nil {
			return false, 0, fmt.Errorf("migrate: version %d (%s) %s: %w", n, v.Name, dir, err)
		}
	}
	bookkeeping := &driver.MigrationInsertManyParams{Schema: m.schema, Line: m.line, Versions: []int{n}}
	if dir == DirectionUp {
		_, err = tx.MigrationInsertMany(ctx, bookkeeping)
	} else {
		err = tx.MigrationDeleteMany(ctx, bookkeeping)
	}
	if err != nil {
		return false, 0, fmt.Errorf("migrate: version %d: record in river_migration: %w", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, 0, fmt.Errorf("migrate: version %d: commit: %w", n, err)
	}
	took = time.Since(start)
	m.logger.InfoContext(ctx, "migrated", "line", m.line, "version", n, "name", v.Name, "direction", string(dir), "duration", took)
	return true, took, nil
}

// hasStatements reports whether SQL has anything but comments and space.
func hasStatements(sql string) bool {
	for line := range strings.Lines(sql) {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "--") {
			return true
		}
	}
	return false
}

// checkSchema fails clearly when a configured schema does not exist.
func (m *Migrator[TTx]) checkSchema(ctx context.Context, exec driver.Executor) error {
	if m.schema == "" {
		return nil
	}
	ok, err := exec.SchemaExists(ctx, m.schema)
	if err != nil {
		return fmt.Errorf("migrate: check schema %q: %w", m.schema, err)
	}
	if !ok {
		return fmt.Errorf("migrate: schema %q does not exist (create it first: CREATE SCHEMA %q)", m.schema, m.schema)
	}
	return nil
}
