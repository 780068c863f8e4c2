package millracetest_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetest"
)

// SendInvoiceArgs are the args of the job the code under test inserts.
type SendInvoiceArgs struct {
	InvoiceID int    `json:"invoice_id"`
	Email     string `json:"email"`
}

func (SendInvoiceArgs) Kind() string { return "send_invoice" }

// ChargeCardArgs are the args of a second job.
type ChargeCardArgs struct {
	InvoiceID int `json:"invoice_id"`
}

func (ChargeCardArgs) Kind() string { return "charge_card" }

// closeInvoice is the code under test: in the caller's transaction it
// inserts a job that charges the card, then one that sends the invoice.
func closeInvoice(ctx context.Context, c *client.Client[pgx.Tx], tx pgx.Tx, id int, email string) error {
	if _, err := c.InsertTx(ctx, tx, ChargeCardArgs{InvoiceID: id}, &client.InsertOpts{Queue: "billing"}); err != nil {
		return err
	}
	_, err := c.InsertTx(ctx, tx, SendInvoiceArgs{InvoiceID: id, Email: email}, &client.InsertOpts{
		Queue: "email",
		Tags:  []string{"invoice"},
	})
	return err
}

// Example tests code that inserts jobs: the jobs it inserted are found,
// typed, and a wrong expectation fails with what was found instead. In a
// real test, pass your *testing.T where this example passes exampleT.
func Example() {
	ctx := context.Background()
	pool, schema, cleanup := exampleDatabase(ctx)
	defer cleanup()

	drv := pgxv5.New(pool)
	c, err := client.New(drv, &client.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	if err := closeInvoice(ctx, c, tx, 42, "ada@example.com"); err != nil {
		log.Fatal(err)
	}

	// Inside the transaction, before the commit:
	job := millracetest.RequireInsertedTx(ctx, exampleT, drv, tx, SendInvoiceArgs{}, &millracetest.RequireInsertedOpts{
		Schema: schema,
		Queue:  "email",
		Tags:   []string{"invoice"},
	})
	fmt.Printf("invoice %d is sent to %s\n", job.Args.InvoiceID, job.Args.Email)
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}

	// After the commit, both jobs in order:
	rows := millracetest.RequireManyInserted(ctx, exampleT, drv, []millracetest.ExpectedJob{
		{Args: ChargeCardArgs{}, Opts: &millracetest.RequireInsertedOpts{Queue: "billing"}},
		{Args: SendInvoiceArgs{}},
	}, &millracetest.RequireManyInsertedOpts{Schema: schema})
	fmt.Println("inserted:", rows[0].Kind, "then", rows[1].Kind)

	// A wrong expectation fails the test and shows what was found.
	runPrinting(func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, drv, SendInvoiceArgs{}, &millracetest.RequireInsertedOpts{
			Schema:   schema,
			Queue:    "default",
			Priority: 2,
		})
	})
	runPrinting(func(tb testing.TB) {
		millracetest.RequireNotInserted(ctx, tb, drv, ChargeCardArgs{}, &millracetest.RequireInsertedOpts{Schema: schema})
	})

	// Output:
	// invoice 42 is sent to ada@example.com
	// inserted: charge_card then send_invoice
	// FAIL: millracetest: RequireInserted: none of the 1 job of kind "send_invoice" in schema "(schema)" matches; the nearest (fewest differences, then newest):
	//   job 2 (kind "send_invoice", state available, queue "email", priority 1, args {"email":"ada@example.com","invoice_id":42}):
	//       queue: want "default", got "email"
	//       priority: want 2, got 1
	// FAIL: millracetest: RequireNotInserted: found 1 job of kind "charge_card" in schema "(schema)", want none (newest first):
	//   job 1 (kind "charge_card", state available, queue "billing", priority 1, args {"invoice_id":42})
}

// exampleT stands for the *testing.T of a real test, which an Example has
// not; a failure ends the example.
var exampleT testing.TB = &printTB{fatal: func() { os.Exit(1) }}

// printTB is a testing.TB that prints failures, with the example's random
// schema name replaced so that the output is stable.
type printTB struct {
	testing.TB
	fatal func()
}

func (p *printTB) Helper() {}

func (p *printTB) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if exampleSchema != "" {
		msg = strings.ReplaceAll(msg, exampleSchema, "(schema)")
	}
	fmt.Println("FAIL: " + msg)
	p.fatal()
}

// exampleSchema is the schema of the running example, for printTB.
var exampleSchema string

// runPrinting runs fn with a printTB in a goroutine of its own, as the
// testing package runs a test, and waits for it to return or stop.
func runPrinting(fn func(tb testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(&printTB{fatal: runtime.Goexit})
	}()
	<-done
}

// exampleDatabase makes a fresh schema migrated to the latest version on
// TEST_DATABASE_URL (default: postgres on 127.0.0.1:5432).
func exampleDatabase(ctx context.Context) (pool *pgxpool.Pool, schema string, cleanup func()) {
	pool, schema, cleanup = testfixture.ExampleDatabase(ctx, "millracetest_example_")
	exampleSchema = schema
	return pool, schema, cleanup
}
