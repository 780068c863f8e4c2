package client_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/databasesql"
)

// ShipOrderArgs are the args of a job that ships an order.
type ShipOrderArgs struct {
	OrderID int64 `json:"order_id"`
}

func (ShipOrderArgs) Kind() string { return "ship_order" }

// ShipOrderWorker marks the order shipped and completes its job in one
// *sql.Tx: the job is completed exactly when the order is shipped.
type ShipOrderWorker struct {
	client.WorkerDefaults[ShipOrderArgs]
	db     *sql.DB
	orders string // the orders table, quoted
	done   chan<- int64
}

func (w *ShipOrderWorker) Work(ctx context.Context, job *client.Job[ShipOrderArgs]) error {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "UPDATE "+w.orders+" SET shipped = true WHERE id = $1", job.Args.OrderID); err != nil {
		return err
	}
	if _, err := client.JobCompleteTx(ctx, tx, job); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	w.done <- job.Args.OrderID
	return nil
}

// Example_databaseSQL runs a client on a *sql.DB, as an application built
// on database/sql (Bun, GORM, sqlx) has one: the order and its job are
// inserted in one *sql.Tx, and the worker ships the order and completes
// the job in another. Without a listener connection the client polls for
// jobs.
func Example_databaseSQL() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()
	// An application opens its *sql.DB with sql.Open("pgx", url) after
	// importing github.com/jackc/pgx/v5/stdlib; here it shares the
	// example's pgx pool.
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	orders := pgx.Identifier{schema, "orders"}.Sanitize()
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+orders+" (id bigint PRIMARY KEY, shipped boolean NOT NULL DEFAULT false)"); err != nil {
		log.Fatal(err)
	}

	// nil options: no listener, the client polls (FetchPollInterval).
	// databasesql.Options.ListenerConfig, made by pgx.ParseConfig, gives
	// it a LISTEN connection instead.
	drv, err := databasesql.New(db, nil)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan int64, 1)
	workers := client.NewWorkers()
	client.AddWorker(workers, &ShipOrderWorker{db: db, orders: orders, done: done})
	c, err := client.New(drv, &client.Config{
		Schema:            schema,
		Queues:            map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: 5}},
		Workers:           workers,
		FetchPollInterval: 50 * time.Millisecond,
		Logger:            slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Stop(ctx) //nolint:errcheck // a second Stop returns nil

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+orders+" (id) VALUES (42)"); err != nil {
		log.Fatal(err)
	}
	res, err := c.InsertTx(ctx, tx, ShipOrderArgs{OrderID: 42}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("worker shipped order", <-done)

	if err := c.Stop(ctx); err != nil {
		log.Fatal(err)
	}
	// The admin calls take a *sql.Tx too.
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	job, err := c.JobGetTx(ctx, tx, res.Job.ID)
	if err != nil {
		log.Fatal(err)
	}
	var shipped bool
	if err := tx.QueryRowContext(ctx, "SELECT shipped FROM "+orders+" WHERE id = 42").Scan(&shipped); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("job %s, order shipped: %t\n", job.State, shipped)
	if err := c.QueuePauseTx(ctx, tx, client.QueueDefault); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
	q, err := c.QueueGet(ctx, client.QueueDefault)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("queue paused:", q.PausedAt != nil)

	// Output:
	// worker shipped order 42
	// job completed, order shipped: true
	// queue paused: true
}
