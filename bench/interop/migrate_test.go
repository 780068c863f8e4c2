package interop

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

// TestMigrators migrates one schema with River's migrator and another with
// millrace's line main (River's schema); each migrator must find nothing to
// do on the other's schema, and pg_dump must print the same schema for
// both. (Line millrace on top: lines_test.go.)
func TestMigrators(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t)
	byRiver, byMillrace := newSchema(t, pool), newSchema(t, pool)
	migrateRiver(t, pool, byRiver)
	m, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: byMillrace})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(ctx, migrate.DirectionUp, nil); err != nil {
		t.Fatalf("millrace migrate line main of %s: %v", byMillrace, err)
	}

	t.Run("millrace sees River's schema up to date", func(t *testing.T) {
		m, err := migrate.New(pgxv5.New(pool), &migrate.Config{Schema: byRiver})
		if err != nil {
			t.Fatal(err)
		}
		pending, err := m.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pending) != 0 {
			t.Errorf("millrace finds %d versions pending on a River-migrated schema: %v", len(pending), pending)
		}
		applied, err := m.Applied(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var versions []int
		for _, a := range applied {
			versions = append(versions, a.Version)
		}
		if want := []int{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(versions, want) {
			t.Errorf("millrace reads applied versions %v, want %v", versions, want)
		}
		res, err := m.Migrate(ctx, migrate.DirectionUp, nil)
		if err != nil {
			t.Fatalf("millrace migrate up on River's schema: %v", err)
		}
		if len(res.Versions) != 0 {
			t.Errorf("millrace applied %d versions on a River-migrated schema", len(res.Versions))
		}
	})

	t.Run("River sees millrace's schema up to date", func(t *testing.T) {
		m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: byMillrace, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		existing, err := m.ExistingVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var versions []int
		for _, v := range existing {
			versions = append(versions, v.Version)
		}
		if want := []int{1, 2, 3, 4, 5, 6, 7, 8}; !slices.Equal(versions, want) {
			t.Errorf("River reads applied versions %v, want %v", versions, want)
		}
		valid, err := m.Validate(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !valid.OK {
			t.Errorf("River's migrator does not validate millrace's schema: %v", valid.Messages)
		}
		res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
		if err != nil {
			t.Fatalf("River migrate up on millrace's schema: %v", err)
		}
		if len(res.Versions) != 0 {
			t.Errorf("River applied %d versions on a millrace-migrated schema", len(res.Versions))
		}
	})

	t.Run("pg_dump equal", func(t *testing.T) {
		r, m := dumpSchema(t, pool, byRiver), dumpSchema(t, pool, byMillrace)
		if r != m {
			t.Errorf("pg_dump of the schema River migrated and of the one millrace migrated differ:\n%s", lineDiff(r, m))
		}
	})
}

// dumpSchema is pg_dump --schema-only of one schema, normalized: no blank
// or comment lines, no \restrict lines (their key is random), the schema's
// name replaced by SCHEMA.
func dumpSchema(t *testing.T, pool *pgxpool.Pool, schema string) string {
	t.Helper()
	cc := pool.Config().ConnConfig
	cmd := exec.Command("pg_dump", "--schema-only", "--no-owner", "--no-privileges", "-n", schema,
		"-h", cc.Host, "-p", fmt.Sprint(cc.Port), "-U", cc.User, "-d", cc.Database)
	cmd.Env = append(cmd.Environ(), "PGPASSWORD="+cc.Password, "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump -n %s (pg_dump must be installed and as new as the server): %v\n%s", schema, err, out)
	}
	var lines []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "--") ||
			strings.HasPrefix(line, `\restrict`) || strings.HasPrefix(line, `\unrestrict`) {
			continue
		}
		lines = append(lines, strings.ReplaceAll(line, schema, "SCHEMA"))
	}
	return strings.Join(lines, "\n")
}

// lineDiff lists the lines only one side has.
func lineDiff(river, millrace string) string {
	r, m := strings.Split(river, "\n"), strings.Split(millrace, "\n")
	var b strings.Builder
	for _, l := range r {
		if !slices.Contains(m, l) {
			b.WriteString("only River's:    " + l + "\n")
		}
	}
	for _, l := range m {
		if !slices.Contains(r, l) {
			b.WriteString("only millrace's: " + l + "\n")
		}
	}
	if b.Len() == 0 {
		b.WriteString("the same lines in a different order")
	}
	return b.String()
}
