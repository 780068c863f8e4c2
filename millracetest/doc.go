// Package millracetest helps you test code that inserts millrace jobs and
// the workers that run them: it checks, from a test, that the jobs your
// code inserted are the ones you expect, with messages that say what was
// found instead, and it runs jobs through your workers as a client would.
//
// # The assertions
//
// RequireInserted requires that exactly one job of a kind was inserted and
// returns it, its args decoded into your args type like a worker's job:
//
//	job := millracetest.RequireInserted(ctx, t, drv, SendEmailArgs{}, &millracetest.RequireInsertedOpts{
//		Schema: schema,
//		Queue:  "email",
//	})
//	if job.Args.To != "ada@example.com" {
//		t.Errorf("email to %q", job.Args.To)
//	}
//
// RequireNotInserted requires that no job of a kind (or none matching the
// options) was inserted; RequireManyInserted requires that the jobs of some
// kinds are exactly a list of expected jobs, in insertion order:
//
//	millracetest.RequireManyInserted(ctx, t, drv, []millracetest.ExpectedJob{
//		{Args: ChargeCardArgs{}},
//		{Args: SendEmailArgs{}, Opts: &millracetest.RequireInsertedOpts{Queue: "email"}},
//	}, &millracetest.RequireManyInsertedOpts{Schema: schema})
//
// Each has a Tx variant (RequireInsertedTx, RequireNotInsertedTx,
// RequireManyInsertedTx) that reads inside your transaction, so it sees
// jobs inserted by client.InsertTx before the commit, and nothing of a
// transaction that rolled back. The Tx variants read in a savepoint they
// roll back: the transaction is left as it was.
//
// The functions are generic over the driver's transaction type and, like
// workers, over the args type: RequireInserted[TTx, TArgs] returns a
// *client.Job[TArgs]. Both type arguments are inferred from the driver and
// the args you pass (a *pgxv5.Driver gives TTx = pgx.Tx).
//
// # What matches
//
// The kind always comes from expectedArgs.Kind(), so args types that name
// their kind at run time (client.AddWorkerArgs) and client.RawArgs work
// too. Then every option set in RequireInsertedOpts must hold: Queue,
// Priority, MaxAttempts, State, ScheduledAt (give or take
// ScheduledAtWithin), a ScheduledFrom/ScheduledTo window, Tags (the exact
// set), Metadata (a JSON object the job's metadata contains, as jsonb's
// @>), Unique and UniqueStates (the job was inserted unique, in those
// states). The args themselves are compared only with MatchArgs (as JSON
// values); by default the test reads the returned job's Args, which gives
// better messages for a single field.
//
// A job counts as inserted whatever happened to it since: a job already
// worked by a client running in the test is still found. Set State to
// require a state.
//
// RequireInserted wants exactly one match: when several jobs match, it
// fails and names them, so a job inserted twice by mistake does not go
// unnoticed. Tell them apart with more options, or list them with
// RequireManyInserted.
//
// # Failures
//
// Every function takes a testing.TB and fails it with Fatalf, which stops
// the test. The message names the function and explains:
//
//   - no job of the kind: the kinds that were inserted (up to ten, most
//     recent first), which catches a typo in a kind or a wrong schema;
//   - no match: the nearest jobs of the kind (up to five, those with the
//     fewest differing fields first, then the newest), each with the
//     fields that differ, as "queue: want "email", got "default"";
//   - RequireNotInserted: the jobs that should not exist (up to five,
//     newest first);
//   - RequireManyInserted: position by position, the job found and how
//     it differs, the expected jobs that are missing and the jobs that
//     were not expected.
//
// Bad input fails the test the same way with a message that says what is
// wrong, and never panics: a nil ctx, driver, transaction or args, args
// whose Kind() panics or is empty, invalid options (Priority 7, an
// inverted scheduled window, Metadata that is not a JSON object, ...), an
// empty list for RequireManyInserted, a driver without a pool given to a
// variant that is not Tx. Database errors (a schema that does not exist,
// a table not migrated) are reported with the failing query's error. A
// nil testing.TB cannot report anything: the function then writes the
// reason to standard error and stops its goroutine (runtime.Goexit),
// which the testing package reports as a failed test.
//
// # Running a worker
//
// NewWorker makes a harness that runs jobs through one of your workers
// synchronously, without starting a client, the way a working client
// would: the config's worker middleware and hooks, the job's timeout,
// panic recovery and client.ClientFromContext all apply. Work inserts a job
// from args and works it at once; WorkJob works an existing row (marked
// running first, its attempt counted). The outcome is written to the row,
// and the WorkResult says how the attempt ended (Kind), with the row, the
// recorded error, the next retry time, the snooze, the output and the
// attempt's log lines:
//
//	w := millracetest.NewWorker(t, drv, &client.Config{Schema: schema}, client.Worker[ResizeArgs](&ResizeWorker{}))
//	res := w.Work(ctx, t, ResizeArgs{Path: "cat.png"}, nil)
//	if res.Kind != client.EventKindJobCompleted {
//		t.Fatalf("resize: %s (%s)", res.Kind, res.Err)
//	}
//
// WorkTx and WorkJobTx do the same inside a transaction of yours.
//
// # Schemas
//
// Jobs are read from RequireInsertedOpts.Schema (and
// RequireManyInsertedOpts.Schema), the schema your client's Config.Schema
// names; empty means the connection's search_path. Tests that give each
// test its own schema pass it in the options.
//
// # Shutdown under load
//
// ShutdownUnderLoad runs your workers in real clients on a scratch schema
// under a load you describe (ShutdownConfig.Mix, Backlog, Rate), shuts the
// clients down as ShutdownConfig.Plan says (Stop with a deadline,
// StopAndCancel, the Start context cancelled, two Stops at once, a child
// process killed with SIGKILL and restarted, or killed while peer clients
// work alongside and rescue its jobs), works what is left, and
// checks from the database and from a recording WorkerMiddleware it adds
// what the shutdowns did to the jobs: see ShutdownReport. Each problem
// fails the test with Errorf; the report is returned and its Table logged.
package millracetest
