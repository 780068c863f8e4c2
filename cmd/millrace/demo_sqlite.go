package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/millrace/millrace/cmd/internal/demo"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/sqlite"
	"github.com/millrace/millrace/millracetype"
)

// The demo on SQLite (millrace demo --driver sqlite): no server, a file.
// Without --path the file is new, in a temporary directory, removed at the
// end unless --keep.

// runSQLiteDemo opens (creating) the database file, refuses one that already
// holds jobs, runs the demo in it, and removes a temporary file.
func runSQLiteDemo(ctx context.Context, path string, keep bool, cfg *demo.Config, out io.Writer) error {
	if path == "" {
		dir, err := os.MkdirTemp("", "millrace-demo-")
		if err != nil {
			return err
		}
		path = filepath.Join(dir, "millrace.db")
		if !keep {
			defer os.RemoveAll(dir)
		}
	}
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	drv := sqlite.New(db)
	ok, err := drv.GetExecutor().TableExists(ctx, &driver.TableExistsParams{Table: "river_job"})
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%s already holds millrace's tables (a demo kept with --keep?); the demo needs a new file: remove it or pass another --path", path)
	}
	cfg.Where = "SQLite file " + path
	cfg.InsertWith = "INSERTs in one transaction"
	if keep {
		defer fmt.Fprintf(out, "kept %s: its jobs are in table river_job\n", path)
	}
	return demo.Run(ctx, drv, &sqliteStore{db: db, exec: drv.GetExecutor()}, cfg)
}

// sqliteStore reads the demo's counts from the SQLite file.
type sqliteStore struct {
	db   *sql.DB
	exec driver.Executor
}

func (s *sqliteStore) counts(ctx context.Context, col string) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+col+", count(*) FROM river_job GROUP BY 1")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		counts[k] = n
	}
	return counts, rows.Err()
}

func (s *sqliteStore) KindCounts(ctx context.Context) (map[string]int, error) {
	return s.counts(ctx, "kind")
}

func (s *sqliteStore) StateCounts(ctx context.Context) (map[millracetype.JobState]int, error) {
	c, err := s.counts(ctx, "state")
	if err != nil {
		return nil, err
	}
	out := make(map[millracetype.JobState]int, len(c))
	for k, n := range c {
		out[millracetype.JobState(k)] = n
	}
	return out, nil
}

func (s *sqliteStore) Job(ctx context.Context, id int64) (*millracetype.JobRow, error) {
	return s.exec.JobGetByID(ctx, &driver.JobGetByIDParams{ID: id})
}
