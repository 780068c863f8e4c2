package testfixture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

// ExampleDatabase makes a fresh schema named prefix plus a random suffix,
// migrated to the latest version, on TEST_DATABASE_URL (default: postgres
// on 127.0.0.1:5432), for runnable Examples, which have no testing.T: a
// failure ends the process with log.Fatal. cleanup drops the schema and
// closes the pool.
func ExampleDatabase(ctx context.Context, prefix string) (pool *pgxpool.Pool, schema string, cleanup func()) {
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres"
	}
	suffix := make([]byte, 8)
	if _, err := rand.Read(suffix); err != nil {
		log.Fatal(err)
	}
	schema = prefix + hex.EncodeToString(suffix)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		pool.Close()
		log.Fatalf("example database at %s: %v", url, err)
	}
	cleanup = func() {
		if _, err := pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			log.Printf("drop example schema %s: %v", schema, err)
		}
		pool.Close()
	}
	if _, err := migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: schema}, migrate.DirectionUp, nil); err != nil {
		cleanup()
		log.Fatal(err)
	}
	return pool, schema, cleanup
}
