package databasesql_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/databasesql"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/riverdrivertest"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// openDB returns a fresh schema and a *sql.DB of pgx's stdlib whose
// connections have it as their search_path, closed at cleanup.
func openDB(t *testing.T) (schema string, db *sql.DB, listen *databasesql.Options) {
	t.Helper()
	schema, pool := testdb.NewSchema(t)
	cfg := pool.Config().ConnConfig
	db = stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { _ = db.Close() })
	return schema, db, &databasesql.Options{ListenerConfig: cfg}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	riverdrivertest.Exercise(t.Context(), t, func(ctx context.Context, t *testing.T) (driver.Driver[*sql.Tx], string) {
		schema, db, opts := openDB(t)
		drv, err := databasesql.New(db, opts)
		if err != nil {
			t.Fatal(err)
		}
		return drv, schema
	})
}
