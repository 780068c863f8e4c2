// Command millrace-sqlite runs millrace's demo on SQLite, with no server:
//
//	millrace-sqlite demo [--path FILE] [--jobs N] [--workers N] [--keep]
//
// It is the SQLite half of `millrace demo`: the millrace command is built
// from the core module, which keeps modernc.org/sqlite out of its
// dependencies, so the SQLite demo lives in this module of its own. Without
// --path the database is a new file in a temporary directory, removed at
// the end unless --keep.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/millrace/millrace/cmd/internal/demo"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/sqlite"
	"github.com/millrace/millrace/millracetype"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command, returning its exit code: 0, 1 for a failed demo, 2
// for bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "demo" {
		fmt.Fprintln(stderr, "usage: millrace-sqlite demo [--path FILE] [--jobs N] [--workers N] [--keep]")
		return 2
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("path", "", "the SQLite database file (default: a new file in a temporary directory)")
	jobs := fs.Int("jobs", 20000, "how many jobs to insert")
	workers := fs.Int("workers", 200, "workers of the demo queue")
	keep := fs.Bool("keep", false, "keep the database file afterwards")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "millrace-sqlite demo: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg := &demo.Config{Jobs: *jobs, Workers: *workers, Out: stdout}
	if err := cfg.Validate(); err != nil { // before any file is created
		fmt.Fprintf(stderr, "millrace-sqlite: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runDemo(ctx, *path, *keep, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "millrace-sqlite: %v\n", err)
		if errors.Is(err, demo.ErrInvalidConfig) || errors.Is(err, sqlite.ErrInvalidPath) {
			return 2
		}
		return 1
	}
	return 0
}

// runDemo opens (creating) the database file, refuses one that already
// holds jobs, runs the demo in it, and removes a temporary file.
func runDemo(ctx context.Context, path string, keep bool, cfg *demo.Config, out io.Writer) error {
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
	return demo.Run(ctx, drv, &store{db: db, exec: drv.GetExecutor()}, cfg)
}

// store reads the demo's counts from the SQLite file.
type store struct {
	db   *sql.DB
	exec driver.Executor
}

func (s *store) counts(ctx context.Context, col string) (map[string]int, error) {
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

func (s *store) KindCounts(ctx context.Context) (map[string]int, error) { return s.counts(ctx, "kind") }

func (s *store) StateCounts(ctx context.Context) (map[millracetype.JobState]int, error) {
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

func (s *store) Job(ctx context.Context, id int64) (*millracetype.JobRow, error) {
	return s.exec.JobGetByID(ctx, &driver.JobGetByIDParams{ID: id})
}
