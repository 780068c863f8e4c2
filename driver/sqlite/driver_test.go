package sqlite

import (
	"context"
	"database/sql"
	sqldriver "database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"modernc.org/sqlite"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/riverdrivertest"
)

// registerProbe registers the function riverdrivertest's rawValue calls on
// SQLite: it fails with its argument, JSON-encoded between markers.
func registerProbe() {
	sqlite.MustRegisterScalarFunction("millrace_test_probe", 1, func(_ *sqlite.FunctionContext, args []sqldriver.Value) (sqldriver.Value, error) {
		var v any
		switch a := args[0].(type) {
		case nil:
		case []byte:
			v = string(a)
		default:
			v = fmt.Sprint(a)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return nil, errors.New("millrace-probe[" + string(b) + "]millrace-probe")
	})
}

// TestConformance runs every riverdrivertest group. Subtests about row
// locks (one transaction skipping or waiting for a row another holds)
// skip themselves, since the driver declares driver.SingleWriter: all of
// AdminRace's and AdminManyRace's, and one or two in PGAdvisoryXactLock,
// JobGetAvailable, JobInsertManyReplace, JobSetStateIfRunningMany,
// ClientLiveness and PeriodicJob (and Limit's last check). Listener's and
// NotifyMany's skip for SupportsListener false, and Migration's
// PreVersion5Shape (River's first river_migration, which the SQLite line
// never had).

// newTestDriver opens a fresh database file for one test.
func newTestDriver(ctx context.Context, t *testing.T) *Driver {
	t.Helper()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "millrace.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return New(db)
}

func TestConformance(t *testing.T) {
	riverdrivertest.ExerciseWith(context.Background(), t,
		&riverdrivertest.Options{Dialect: riverdrivertest.DialectSQLite},
		func(ctx context.Context, t *testing.T) (driver.Driver[*sql.Tx], string) {
			return newTestDriver(ctx, t), "main"
		})
}

// otherDriver is a database/sql driver that is not SQLite's.
type otherDriver struct{}

func (otherDriver) Open(string) (sqldriver.Conn, error) { return nil, errors.New("no connection") }

func init() { sql.Register("millrace-not-sqlite", otherDriver{}) }

// A *sql.DB of another database/sql driver gets a clear error on every
// call, not that database's syntax errors.
func TestWrongDB(t *testing.T) {
	db, err := sql.Open("millrace-not-sqlite", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = New(db).GetExecutor().TableExists(context.Background(), &driver.TableExistsParams{Table: "river_job"})
	if !errors.Is(err, ErrWrongDB) || !strings.Contains(err.Error(), "sqlite.otherDriver") {
		t.Fatalf("TableExists on another driver's *sql.DB: %v", err)
	}
}
