// Package migrate creates and upgrades millrace's tables. They come in two
// migration lines, both recorded in River's river_migration table:
//
//   - Line "main" (LineMain) is River's schema, versions 1 to 8, so that
//     River and millrace clients can share one database and either migrator
//     sees nothing pending on a database the other migrated.
//   - Line "millrace" (LineMillrace) holds what millrace stores beyond
//     River's schema, in tables named millrace_* that River never reads
//     (version 1: millrace_client, for client heartbeats; version 2:
//     millrace_periodic, the schedules of durable periodic jobs). It needs line
//     main at version 5 or later, whose river_migration has the line
//     column; River's migrator and clients ignore it.
//
// A Migrator works on one line (Config.Line); MigrateAll migrates every
// line in dependency order, which is what `millrace migrate up` does. Line
// main cannot be migrated below the version another line needs while that
// line has versions applied: migrate the dependent line down first
// (MigrateAll does). River's own migrator knows nothing of line millrace
// but agrees: its version 5 down refuses while river_migration records any
// line but main, and so does millrace's, for lines it does not know either.
//
// Each version runs in its own transaction together with its river_migration
// row, under a transaction-level advisory lock shared by all lines of a
// schema, so two processes migrating at once apply every version exactly
// once. Users who apply migrations with their own tool (goose, atlas, tern,
// psql) can print the SQL with SQL.
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

// LineMain is River's migration line: River's schema, versions 1 to 8.
const LineMain = "main"

// LineMillrace is millrace's own migration line: tables named millrace_*
// that River never reads. It needs line main at version 5 or later.
const LineMillrace = "millrace"

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

// ErrLineDependency is returned (wrapped) when migrating would break a
// dependency between lines: migrating line millrace up while line main is
// below the version it needs, or line main down below that version while
// line millrace still has versions applied. The message names the line to
// migrate first.
var ErrLineDependency = errors.New("migration line dependency")

// ErrInvalidSchema is returned (wrapped) for a schema name that cannot be
// used. The client's configuration check returns it too.
var ErrInvalidSchema = schemaname.ErrInvalid

//go:embed main/*.sql millrace/*.sql
var embedded embed.FS

// lineSpec describes one migration line.
type lineSpec struct {
	// name is the line's name in river_migration.
	name string
	// dir is the directory of its SQL files in the embedded file system.
	dir string
	// linedFrom is the first version recorded together with the line's
	// name: River's line main records versions 1 to 4 in a river_migration
	// without a line column, which its version 5 adds. 0 for lines that
	// always have it.
	linedFrom int
	// createsTable is set for the line whose version 1 creates
	// river_migration itself (and whose version 1 down drops it).
	createsTable bool
	// requiresMain is the version of line main every version of this line
	// needs; 0 for none.
	requiresMain int
	// ownPrefix, when set, is the prefix every object the line creates must
	// have; such a line must not name River's tables either.
	ownPrefix string
}

// lineSpecs are the lines millrace knows, in the order they are applied.
var lineSpecs = []lineSpec{
	{name: LineMain, dir: "main", linedFrom: 5, createsTable: true},
	{name: LineMillrace, dir: "millrace", requiresMain: 5, ownPrefix: "millrace_"},
}

// Lines lists the migration lines millrace knows, in the order they are
// applied: a line may depend only on lines before it.
func Lines() []string {
	names := make([]string, len(lineSpecs))
	for i, s := range lineSpecs {
		names[i] = s.name
	}
	return names
}

// specFor finds a line by name.
func specFor(name string) (lineSpec, bool) {
	for _, s := range lineSpecs {
		if s.name == name {
			return s, true
		}
	}
	return lineSpec{}, false
}

// dependents lists the lines that need line main.
func dependents() []lineSpec {
	var deps []lineSpec
	for _, s := range lineSpecs {
		if s.requiresMain > 0 {
			deps = append(deps, s)
		}
	}
	return deps
}

// Version is one migration version of a line.
type Version struct {
	// Line is the migration line the version belongs to.
	Line string
	// Version is the version number, from 1.
	Version int
	// Name is a short description taken from the file name.
	Name string
	// sqlUp applies the version; it contains the schema placeholder until
	// rendered.
	sqlUp string
	// sqlDown reverts it.
	sqlDown string
}

var fileRE = regexp.MustCompile(`^(\d{3})_([a-z0-9_]+)\.(up|down)\.sql$`)

// loadLine reads the versions of a line from the directory spec.dir of
// fsys, checking that every file is named NNN_name.(up|down).sql, that the
// versions are numbered 1..n without a gap, that each has exactly one up
// and one down file of one name, and, for a line with an own prefix, that
// it creates only objects of that prefix and does not touch River's tables.
func loadLine(fsys fs.FS, spec lineSpec) ([]Version, error) {
	entries, err := fs.ReadDir(fsys, spec.dir)
	if err != nil {
		return nil, fmt.Errorf("line %s: read migrations: %w", spec.name, err)
	}
	byNum := map[int]*Version{}
	for _, e := range entries {
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("line %s: migration file %q is not named NNN_name.up.sql or NNN_name.down.sql", spec.name, e.Name())
		}
		n, _ := strconv.Atoi(m[1])
		if n == 0 {
			return nil, fmt.Errorf("line %s: migration file %q: versions start at 001", spec.name, e.Name())
		}
		body, err := fs.ReadFile(fsys, path.Join(spec.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("line %s: read migration %q: %w", spec.name, e.Name(), err)
		}
		v := byNum[n]
		if v == nil {
			v = &Version{Line: spec.name, Version: n, Name: m[2]}
			byNum[n] = v
		}
		if v.Name != m[2] {
			return nil, fmt.Errorf("line %s: version %d has files of two names, %q and %q", spec.name, n, v.Name, m[2])
		}
		text := string(body)
		if strings.TrimSpace(text) == "" {
			return nil, fmt.Errorf("line %s: migration file %q is empty (a version with nothing to do says so in a comment)", spec.name, e.Name())
		}
		if spec.ownPrefix != "" {
			if err := checkOwnObjects(text, spec.ownPrefix); err != nil {
				return nil, fmt.Errorf("line %s: migration file %q: %w", spec.name, e.Name(), err)
			}
		}
		// The file system holds one file per name, so up and down of a
		// version can be set only once each.
		if m[3] == "up" {
			v.sqlUp = text
		} else {
			v.sqlDown = text
		}
	}
	if len(byNum) == 0 {
		return nil, fmt.Errorf("line %s: no migration files", spec.name)
	}
	versions := make([]Version, 0, len(byNum))
	for n := 1; n <= len(byNum); n++ {
		v, ok := byNum[n]
		if !ok {
			return nil, fmt.Errorf("line %s: migrations skip version %d", spec.name, n)
		}
		if v.sqlUp == "" {
			return nil, fmt.Errorf("line %s: version %d (%s) has no up file", spec.name, n, v.Name)
		}
		if v.sqlDown == "" {
			return nil, fmt.Errorf("line %s: version %d (%s) has no down file", spec.name, n, v.Name)
		}
		versions = append(versions, *v)
	}
	return versions, nil
}

var (
	createRE     = regexp.MustCompile(`(?i)\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+|UNLOGGED\s+|TEMP\s+|TEMPORARY\s+)?(TABLE|INDEX|SEQUENCE|MATERIALIZED\s+VIEW|VIEW|TYPE|FUNCTION|PROCEDURE|TRIGGER)\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?([^\s(]+)`)
	constraintRE = regexp.MustCompile(`(?i)\bCONSTRAINT\s+([^\s(]+)`)
	riverNameRE  = regexp.MustCompile(`(?i)\briver_[a-z0-9_]*`)
)

// checkOwnObjects checks that SQL (comments aside) creates only objects
// named prefix*, schema-qualified with the placeholder where Postgres
// allows it, and names none of River's river_* objects.
func checkOwnObjects(sql, prefix string) error {
	var code strings.Builder
	for line := range strings.Lines(sql) {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i] + "\n"
		}
		code.WriteString(line)
	}
	text := code.String()
	if m := riverNameRE.FindString(text); m != "" {
		return fmt.Errorf("names River's %s: this line must keep to its own %s* tables", m, prefix)
	}
	for _, m := range createRE.FindAllStringSubmatch(text, -1) {
		kind, name := strings.ToUpper(m[1]), m[2]
		want := "{{schema}}" + prefix
		if kind == "INDEX" || kind == "TRIGGER" {
			// Postgres puts these in their table's schema; SQLite in
			// the schema their name gives (a driver's own line).
			want = prefix
			name = strings.TrimPrefix(name, "{{schema}}")
		}
		if !strings.HasPrefix(name, want) {
			return fmt.Errorf("CREATE %s %s: the name must start with %s", kind, name, want)
		}
	}
	for _, m := range constraintRE.FindAllStringSubmatch(text, -1) {
		if !strings.HasPrefix(m[1], prefix) {
			return fmt.Errorf("CONSTRAINT %s: the name must start with %s", m[1], prefix)
		}
	}
	return nil
}

// Config configures a Migrator. The zero value migrates line "main" in the
// connection's default schema.
type Config struct {
	// Schema is the Postgres schema holding River's tables. Empty means
	// unqualified names, that is the connection's search_path (normally
	// public). A given schema must already exist; nothing is created in
	// public. Names match ^[a-zA-Z_][a-zA-Z0-9_]*$, at most 46 characters.
	Schema string
	// Line is the migration line: LineMain (the default when empty) or
	// LineMillrace. MigrateAll requires it empty.
	Line string
	// Logger receives one line per applied version; default: discard.
	Logger *slog.Logger
}

// Migrator applies and reverts the versions of a migration line.
type Migrator[TTx any] struct {
	driver   driver.Driver[TTx]
	schema   string
	spec     lineSpec
	logger   *slog.Logger
	versions []Version
	// dialect is set when the driver brings its own SQL
	// (driver.MigrationProvider): SQL then refuses to print, its guards
	// being Postgres'.
	dialect bool
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

// New returns a Migrator for the driver and the line cfg.Line.
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
	spec, ok := specFor(line)
	if !ok {
		return nil, fmt.Errorf("migrate: unknown migration line %q (known: %s)", line, strings.Join(Lines(), ", "))
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	versions, err := loadLine(embedded, spec)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	p, dialect := any(drv).(driver.MigrationProvider)
	if dialect {
		versions, err = dialectLine(p, spec, versions)
		if err != nil {
			return nil, err
		}
	}
	return &Migrator[TTx]{driver: drv, schema: cfg.Schema, spec: spec, logger: logger, versions: versions, dialect: dialect}, nil
}

// ErrDialectLine is returned (wrapped) when a driver's own migration line
// (driver.MigrationProvider) cannot be used: missing, malformed, or not
// numbered and named as the Postgres line.
var ErrDialectLine = errors.New("driver's migration line does not match millrace's")

// dialectLine loads a line from a driver's own SQL and checks that it has
// the versions of the Postgres line pg, of the same names, so that
// river_migration records the same versions whatever the database.
func dialectLine(p driver.MigrationProvider, spec lineSpec, pg []Version) ([]Version, error) {
	fsys := p.MigrationFS()
	if fsys == nil {
		return nil, fmt.Errorf("migrate: %w: line %s: MigrationFS is nil", ErrDialectLine, spec.name)
	}
	versions, err := loadLine(fsys, spec)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w: %w", ErrDialectLine, err)
	}
	if len(versions) != len(pg) {
		return nil, fmt.Errorf("migrate: %w: line %s has %d versions in the driver's SQL, %d in millrace's", ErrDialectLine, spec.name, len(versions), len(pg))
	}
	for i, v := range versions {
		if v.Name != pg[i].Name {
			return nil, fmt.Errorf("migrate: %w: line %s version %d is %q in the driver's SQL, %q in millrace's", ErrDialectLine, spec.name, v.Version, v.Name, pg[i].Name)
		}
	}
	return versions, nil
}

// Line is the migration line the Migrator works on.
func (m *Migrator[TTx]) Line() string { return m.spec.name }

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

// SQL returns the SQL that takes the line from version from to version to
// (up when to > from, down when to < from), each version wrapped in its own
// BEGIN/COMMIT together with its river_migration bookkeeping, ready for psql
// or another migration tool. from and to are 0..Latest. The SQL checks the
// dependencies between lines as Migrate does: line millrace's versions fail
// unless line main is far enough, and line main's version 5 down fails
// while line millrace has versions recorded.
//
// SQL is Postgres': for a driver with its own migration line
// (driver.MigrationProvider) it returns an error wrapping ErrDialectLine.
func (m *Migrator[TTx]) SQL(from, to int) (string, error) {
	if m.dialect {
		return "", fmt.Errorf("migrate: %w: SQL prints Postgres' SQL only; migrate a database of this driver with Migrate", ErrDialectLine)
	}
	if from < 0 || from > m.Latest() {
		return "", fmt.Errorf("migrate: %w: %d (known 0..%d)", ErrUnknownVersion, from, m.Latest())
	}
	if to < 0 || to > m.Latest() {
		return "", fmt.Errorf("migrate: %w: %d (known 0..%d)", ErrUnknownVersion, to, m.Latest())
	}
	var b strings.Builder
	table := m.render("{{schema}}river_migration")
	line := m.spec.name
	if to > from {
		for n := from + 1; n <= to; n++ {
			v := m.versions[n-1]
			fmt.Fprintf(&b, "-- millrace migration line %s version %03d %s (up)\nBEGIN;\n", line, n, v.Name)
			if m.spec.requiresMain > 0 {
				b.WriteString(m.render(requiresMainGuard(m.spec)))
			}
			fmt.Fprintf(&b, "%s\n", strings.TrimSpace(m.render(v.sqlUp)))
			if n < m.spec.linedFrom {
				fmt.Fprintf(&b, "INSERT INTO %s (version) VALUES (%d);\n", table, n)
			} else {
				fmt.Fprintf(&b, "INSERT INTO %s (line, version) VALUES ('%s', %d);\n", table, line, n)
			}
			b.WriteString("COMMIT;\n\n")
		}
	} else {
		for n := from; n > to; n-- {
			v := m.versions[n-1]
			fmt.Fprintf(&b, "-- millrace migration line %s version %03d %s (down)\nBEGIN;\n", line, n, v.Name)
			if line == LineMain {
				for _, dep := range dependents() {
					if n == dep.requiresMain {
						b.WriteString(m.render(dependentGuard(dep)))
					}
				}
			}
			fmt.Fprintf(&b, "%s\n", strings.TrimSpace(m.render(v.sqlDown)))
			switch {
			case n == 1 && m.spec.createsTable: // the table itself is gone
			case n <= m.spec.linedFrom:
				fmt.Fprintf(&b, "DELETE FROM %s WHERE version = %d;\n", table, n)
			default:
				fmt.Fprintf(&b, "DELETE FROM %s WHERE line = '%s' AND version = %d;\n", table, line, n)
			}
			b.WriteString("COMMIT;\n\n")
		}
	}
	return b.String(), nil
}

// requiresMainGuard is SQL that fails unless line main is at the version
// spec needs. The line column is looked for first: before main's version 5
// river_migration has none, and a query naming it would fail obscurely.
func requiresMainGuard(spec lineSpec) string {
	msg := fmt.Sprintf("migration line %s needs line %s at version %d or later: migrate line %s up first",
		spec.name, LineMain, spec.requiresMain, LineMain)
	return fmt.Sprintf(`DO $millrace$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('{{schema}}river_migration')
            AND attname = 'line' AND NOT attisdropped) THEN
        RAISE EXCEPTION '%[1]s';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM {{schema}}river_migration WHERE line = '%[2]s' AND version >= %[3]d) THEN
        RAISE EXCEPTION '%[1]s';
    END IF;
END;
$millrace$;
`, msg, LineMain, spec.requiresMain)
}

// dependentGuard is SQL that fails while line dep has versions recorded;
// it runs before line main's version dep.requiresMain is reverted.
func dependentGuard(dep lineSpec) string {
	return fmt.Sprintf(`DO $millrace$
BEGIN
    IF EXISTS (SELECT 1 FROM {{schema}}river_migration WHERE line = '%[1]s') THEN
        RAISE EXCEPTION 'line %[2]s cannot go below version %[3]d while line %[1]s has versions applied: migrate line %[1]s down first';
    END IF;
END;
$millrace$;
`, dep.name, LineMain, dep.requiresMain)
}

// Applied lists the versions of the line recorded in the database.
func (m *Migrator[TTx]) Applied(ctx context.Context) ([]*driver.Migration, error) {
	exec := m.driver.GetExecutor()
	if err := m.checkSchema(ctx, exec); err != nil {
		return nil, err
	}
	applied, err := exec.MigrationGetAll(ctx, &driver.MigrationParams{Schema: m.schema, Line: m.spec.name})
	if err != nil {
		return nil, fmt.Errorf("migrate: list applied versions of line %s: %w", m.spec.name, err)
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
	// Line migrated.
	Line string
	// Direction migrated.
	Direction Direction
	// Versions applied (up) or reverted (down), in the order run, with how
	// long each took.
	Versions []MigrateVersion
}

// MigrateVersion is one version run.
type MigrateVersion struct {
	// Version is the version number.
	Version int
	// Name is the version's short description.
	Name string
	// Duration is how long the version took, bookkeeping included.
	Duration time.Duration
}

// latestApplied is the newest version of a line recorded, 0 for none.
func latestApplied(ctx context.Context, exec driver.Executor, schema, line string) (int, error) {
	applied, err := exec.MigrationGetAll(ctx, &driver.MigrationParams{Schema: schema, Line: line})
	if err != nil {
		return 0, fmt.Errorf("read applied versions of line %s: %w", line, err)
	}
	current := 0
	for _, a := range applied {
		current = max(current, a.Version)
	}
	return current, nil
}

// checkDependencies returns an ErrLineDependency error when taking the line
// to version target in direction dir would break a dependency between
// lines, as the database exec sees it.
func (m *Migrator[TTx]) checkDependencies(ctx context.Context, exec driver.Executor, dir Direction, target int) error {
	if dir == DirectionUp && m.spec.requiresMain > 0 && target > 0 {
		mainAt, err := latestApplied(ctx, exec, m.schema, LineMain)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if mainAt < m.spec.requiresMain {
			return fmt.Errorf("migrate: %w: line %s needs line %s at version %d or later, the database has it at version %d; migrate line %s up first",
				ErrLineDependency, m.spec.name, LineMain, m.spec.requiresMain, mainAt, LineMain)
		}
	}
	if dir == DirectionDown && m.spec.name == LineMain {
		for _, dep := range dependents() {
			if target >= dep.requiresMain {
				continue
			}
			depAt, err := latestApplied(ctx, exec, m.schema, dep.name)
			if err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			if depAt > 0 {
				return fmt.Errorf("migrate: %w: line %s cannot go below version %d while line %s has versions applied (up to %d); migrate line %s down first",
					ErrLineDependency, LineMain, dep.requiresMain, dep.name, depAt, dep.name)
			}
		}
	}
	return nil
}

// Migrate migrates the line up or down. Up applies every pending version
// up to the target; down reverts applied versions down to (not including)
// the target. Each version runs in its own transaction. A version another
// process applies (or reverts) meanwhile is skipped, so concurrent
// migrators are safe. A migration that would break a dependency between
// lines is refused before anything runs, with an error wrapping
// ErrLineDependency.
func (m *Migrator[TTx]) Migrate(ctx context.Context, dir Direction, opts *MigrateOpts) (*MigrateResult, error) {
	if opts == nil {
		opts = &MigrateOpts{}
	}
	if dir != DirectionUp && dir != DirectionDown {
		return nil, fmt.Errorf("migrate: unknown direction %q (want %q or %q)", dir, DirectionUp, DirectionDown)
	}
	if opts.TargetVersion < -1 || opts.TargetVersion > m.Latest() || (opts.TargetVersion == -1 && dir != DirectionDown) {
		return nil, fmt.Errorf("migrate: %w: line %s target version %d (known 0..%d)", ErrUnknownVersion, m.spec.name, opts.TargetVersion, m.Latest())
	}
	applied, err := m.Applied(ctx)
	if err != nil {
		return nil, err
	}
	current := 0
	for _, a := range applied {
		if a.Version > m.Latest() {
			return nil, fmt.Errorf("migrate: %w: line %s version %d is applied, this millrace knows up to %d", ErrDatabaseNewer, m.spec.name, a.Version, m.Latest())
		}
		current = max(current, a.Version)
	}
	res := &MigrateResult{Line: m.spec.name, Direction: dir}
	target := opts.TargetVersion
	var steps []int
	if dir == DirectionUp {
		if target == 0 {
			target = m.Latest()
		}
		if target < current {
			return nil, fmt.Errorf("migrate: line %s target version %d is below the current version %d; migrate down instead", m.spec.name, target, current)
		}
		for n := 1; n <= target; n++ {
			steps = append(steps, n)
		}
	} else {
		switch target {
		case 0:
			target = max(current-1, 0)
		case -1:
			target = 0
		}
		if target > current {
			return nil, fmt.Errorf("migrate: line %s target version %d is above the current version %d; migrate up instead", m.spec.name, target, current)
		}
		for n := current; n > target; n-- {
			steps = append(steps, n)
		}
	}
	if len(steps) > 0 && (dir == DirectionDown || target > current) {
		if err := m.checkDependencies(ctx, m.driver.GetExecutor(), dir, target); err != nil {
			return nil, err
		}
	}
	for _, n := range steps {
		ran, d, err := m.runVersion(ctx, n, dir)
		if err != nil {
			return res, err
		}
		if ran {
			res.Versions = append(res.Versions, MigrateVersion{Version: n, Name: m.versions[n-1].Name, Duration: d})
		}
	}
	return res, nil
}

// MigrateAll migrates every line millrace knows (Lines) in dependency order
// and returns one result per line migrated, in the order run. cfg.Line must
// be empty.
//
// Up applies every line up to its latest version, line main first;
// opts.TargetVersion must be 0. Down with opts.TargetVersion -1 reverts
// every line completely, dependent lines first; with 0 (the default) it
// reverts one version of the last line (in Lines order) that has any, which
// undoes the last step an up took. Other targets are versions of one line:
// use a Migrator.
func MigrateAll[TTx any](ctx context.Context, drv driver.Driver[TTx], cfg *Config, dir Direction, opts *MigrateOpts) ([]*MigrateResult, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	if cfg.Line != "" {
		return nil, fmt.Errorf("migrate: MigrateAll migrates every line; Config.Line must be empty, not %q", cfg.Line)
	}
	if opts == nil {
		opts = &MigrateOpts{}
	}
	if dir != DirectionUp && dir != DirectionDown {
		return nil, fmt.Errorf("migrate: unknown direction %q (want %q or %q)", dir, DirectionUp, DirectionDown)
	}
	if opts.TargetVersion != 0 && !(dir == DirectionDown && opts.TargetVersion == -1) {
		return nil, fmt.Errorf("migrate: %w: MigrateAll takes target version 0 (or -1 down), not %d: a version belongs to one line, migrate it with a Migrator", ErrUnknownVersion, opts.TargetVersion)
	}
	migrators := make([]*Migrator[TTx], 0, len(lineSpecs))
	for _, spec := range lineSpecs {
		c := *cfg
		c.Line = spec.name
		m, err := New(drv, &c)
		if err != nil {
			return nil, err
		}
		migrators = append(migrators, m)
	}
	var results []*MigrateResult
	run := func(m *Migrator[TTx], target int) error {
		res, err := m.Migrate(ctx, dir, &MigrateOpts{TargetVersion: target})
		if res != nil {
			results = append(results, res)
		}
		return err
	}
	if dir == DirectionUp {
		for _, m := range migrators {
			if err := run(m, 0); err != nil {
				return results, err
			}
		}
		return results, nil
	}
	slices.Reverse(migrators)
	if opts.TargetVersion == -1 {
		for _, m := range migrators {
			if err := run(m, -1); err != nil {
				return results, err
			}
		}
		return results, nil
	}
	// One step: the last line with anything applied; line main when none
	// has, which then reports nothing done.
	last := migrators[len(migrators)-1]
	for _, m := range migrators {
		applied, err := m.Applied(ctx)
		if err != nil {
			return nil, err
		}
		if len(applied) > 0 {
			last = m
			break
		}
	}
	if err := run(last, 0); err != nil {
		return results, err
	}
	return results, nil
}

// lockKey is the advisory lock migrators of one schema share, whatever the
// line: lines depend on each other, so migrating one must not interleave
// with migrating another. It is the key millrace took when it knew only
// line main, so older millrace binaries exclude the newer ones too.
func (m *Migrator[TTx]) lockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("millrace.migrate\x00" + m.schema + "\x00" + LineMain))
	return int64(h.Sum64())
}

// runVersion applies or reverts one version in its own transaction, unless
// it is already in the wanted state once the lock is held. Dependencies
// between lines are checked again under the lock, so a concurrent migrator
// of another line cannot slip in between check and change.
func (m *Migrator[TTx]) runVersion(ctx context.Context, n int, dir Direction) (ran bool, took time.Duration, err error) {
	start := time.Now()
	v := m.versions[n-1]
	tx, err := m.driver.GetExecutor().Begin(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("migrate: line %s version %d: begin: %w", m.spec.name, n, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err := tx.PGAdvisoryXactLock(ctx, m.lockKey()); err != nil {
		return false, 0, fmt.Errorf("migrate: line %s version %d: take advisory lock: %w", m.spec.name, n, err)
	}
	applied, err := tx.MigrationGetAll(ctx, &driver.MigrationParams{Schema: m.schema, Line: m.spec.name})
	if err != nil {
		return false, 0, fmt.Errorf("migrate: line %s version %d: read applied versions: %w", m.spec.name, n, err)
	}
	isApplied := slices.ContainsFunc(applied, func(a *driver.Migration) bool { return a.Version == n })
	if isApplied == (dir == DirectionUp) {
		return false, 0, tx.Rollback(ctx)
	}
	// Up to n, or down to n-1.
	after := n
	if dir == DirectionDown {
		after = n - 1
	}
	if err := m.checkDependencies(ctx, tx, dir, after); err != nil {
		return false, 0, err
	}
	sql := v.sqlUp
	if dir == DirectionDown {
		sql = v.sqlDown
	}
	if body := m.render(sql); hasStatements(body) {
		if err := tx.Exec(ctx, body); err != nil {
			return false, 0, fmt.Errorf("migrate: line %s version %d (%s) %s: %w", m.spec.name, n, v.Name, dir, err)
		}
	}
	bookkeeping := &driver.MigrationInsertManyParams{Schema: m.schema, Line: m.spec.name, Versions: []int{n}}
	if dir == DirectionUp {
		_, err = tx.MigrationInsertMany(ctx, bookkeeping)
	} else {
		err = tx.MigrationDeleteMany(ctx, bookkeeping)
	}
	if err != nil {
		return false, 0, fmt.Errorf("migrate: line %s version %d: record in river_migration: %w", m.spec.name, n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, 0, fmt.Errorf("migrate: line %s version %d: commit: %w", m.spec.name, n, err)
	}
	took = time.Since(start)
	m.logger.InfoContext(ctx, "migrated", "line", m.spec.name, "version", n, "name", v.Name, "direction", string(dir), "duration", took)
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
		if m.dialect {
			// Not Postgres: a SQLite schema is a database of the
			// connection ("main", or one ATTACHed).
			return fmt.Errorf("migrate: schema %q does not exist in the driver's database", m.schema)
		}
		return fmt.Errorf("migrate: schema %q does not exist (create it first: CREATE SCHEMA %q)", m.schema, m.schema)
	}
	return nil
}
