package migrate_test

import (
	"context"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/migrate"
)

// ExampleMigrateAll migrates both lines at start-up: River's schema (line
// main), then millrace's own tables (line millrace), as `millrace migrate
// up` does.
func ExampleMigrateAll() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	results, err := migrate.MigrateAll(ctx, pgxv5.New(pool), &migrate.Config{Schema: "jobs"}, migrate.DirectionUp, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, res := range results {
		for _, v := range res.Versions {
			log.Printf("migrated line %s to version %d (%s)", res.Line, v.Version, v.Name)
		}
	}
}
