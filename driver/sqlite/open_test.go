package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	registerProbe()
	goleak.VerifyTestMain(m)
}

func TestOpenBadPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	roDir := filepath.Join(dir, "ro")
	if err := os.Mkdir(roDir, 0o500); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"empty":          "",
		"memory":         ":memory:",
		"uri":            "file:x.db",
		"missing dir":    filepath.Join(dir, "nope", "x.db"),
		"parent is file": filepath.Join(file, "x.db"),
		"path is dir":    dir,
		"not a database": file,
	} {
		t.Run(name, func(t *testing.T) {
			db, err := Open(context.Background(), path)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%q): no error", path)
			}
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("Open(%q): %v does not wrap ErrInvalidPath", path, err)
			}
		})
	}
	if os.Geteuid() != 0 { // root writes anywhere
		t.Run("read-only dir", func(t *testing.T) {
			db, err := Open(context.Background(), filepath.Join(roDir, "x.db"))
			if err == nil {
				db.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("%v does not wrap ErrInvalidPath", err)
			}
		})
	}
}

// Concurrent increments through IMMEDIATE transactions on the pool's
// connections never lose an update.
func TestOpenSerialisesWriters(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "a b?#.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE c (n INTEGER NOT NULL); INSERT INTO c VALUES (0)`); err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := incr(ctx, db); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT n FROM c`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != workers*each {
		t.Fatalf("n = %d, want %d", n, workers*each)
	}
}

func incr(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT n FROM c`).Scan(&n); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE c SET n = ?`, n+1); err != nil {
		return err
	}
	return tx.Commit()
}
