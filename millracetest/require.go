package millracetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// RequireInserted requires that exactly one job of expectedArgs' kind,
// matching opts, was inserted in opts.Schema, and returns it with its args
// decoded into TArgs (as a worker of TArgs would get them). A job counts
// whatever its state unless opts.State is set.
//
// Otherwise it fails tb with Fatalf: when no job of the kind exists it
// names the kinds that do; when none matches it shows the nearest jobs of
// the kind (fewest differing fields, then newest) with each differing
// field; when several match it names them (narrow opts, or use
// RequireManyInserted). Bad input (a nil ctx, driver or args, invalid
// opts) and database errors fail tb too. It returns nil when it failed tb
// (a tb whose Fatalf returns).
//
// The driver must have a pool; inside a transaction use
// RequireInsertedTx.
func RequireInserted[TTx any, TArgs client.JobArgs](ctx context.Context, tb testing.TB, drv driver.Driver[TTx], expectedArgs TArgs, opts *RequireInsertedOpts) *client.Job[TArgs] {
	const fn = "RequireInserted"
	requireTB(tb, fn)
	tb.Helper()
	src, err := poolSource(drv)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	defer src.done()
	return requireInserted(ctx, tb, fn, src.exec, expectedArgs, opts)
}

// RequireInsertedTx is RequireInserted reading inside tx, so it sees the
// transaction's own uncommitted inserts (and nothing of a rolled-back
// one). It reads within a savepoint that it rolls back, leaving tx as it
// was. drv may be a driver without a pool (pgxv5.New(nil)).
func RequireInsertedTx[TTx any, TArgs client.JobArgs](ctx context.Context, tb testing.TB, drv driver.Driver[TTx], tx TTx, expectedArgs TArgs, opts *RequireInsertedOpts) *client.Job[TArgs] {
	const fn = "RequireInsertedTx"
	requireTB(tb, fn)
	tb.Helper()
	if ctx == nil {
		fatal(tb, fn, "ctx is nil")
		return nil
	}
	src, err := txSource(ctx, drv, tx)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	defer src.done()
	return requireInserted(ctx, tb, fn, src.exec, expectedArgs, opts)
}

// RequireNotInserted requires that no job of expectedArgs' kind matching
// opts was inserted in opts.Schema: with nil opts (or opts that set only
// Schema) no job of the kind at all, else none that matches every
// expectation set in opts (RequireNotInserted(ctx, tb, drv, args,
// &RequireInsertedOpts{Queue: "email"}) allows jobs of the kind in other
// queues). A job counts whatever its state unless opts.State is set.
//
// Otherwise it fails tb with Fatalf, describing the matching jobs (up to
// five, newest first). Bad input and database errors fail tb too.
func RequireNotInserted[TTx any, TArgs client.JobArgs](ctx context.Context, tb testing.TB, drv driver.Driver[TTx], expectedArgs TArgs, opts *RequireInsertedOpts) {
	const fn = "RequireNotInserted"
	requireTB(tb, fn)
	tb.Helper()
	src, err := poolSource(drv)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return
	}
	defer src.done()
	requireNotInserted(ctx, tb, fn, src.exec, expectedArgs, opts)
}

// RequireNotInsertedTx is RequireNotInserted reading inside tx (see
// RequireInsertedTx).
func RequireNotInsertedTx[TTx any, TArgs client.JobArgs](ctx context.Context, tb testing.TB, drv driver.Driver[TTx], tx TTx, expectedArgs TArgs, opts *RequireInsertedOpts) {
	const fn = "RequireNotInsertedTx"
	requireTB(tb, fn)
	tb.Helper()
	if ctx == nil {
		fatal(tb, fn, "ctx is nil")
		return
	}
	src, err := txSource(ctx, drv, tx)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return
	}
	defer src.done()
	requireNotInserted(ctx, tb, fn, src.exec, expectedArgs, opts)
}

// RequireManyInserted requires that the jobs of the kinds named in
// expected are exactly the expected ones, in insertion order (by id): the
// i-th job of those kinds has expected[i]'s kind and matches its Opts.
// Jobs of other kinds are ignored. It returns the jobs, in order.
//
// Otherwise it fails tb with Fatalf, listing position by position the job
// found and how it differs, the expected jobs that are missing and the
// jobs that were not expected. An empty expected list is bad input (use
// RequireNotInserted to require that nothing was inserted); it, other bad
// input and database errors fail tb too.
func RequireManyInserted[TTx any](ctx context.Context, tb testing.TB, drv driver.Driver[TTx], expected []ExpectedJob, opts *RequireManyInsertedOpts) []*millracetype.JobRow {
	const fn = "RequireManyInserted"
	requireTB(tb, fn)
	tb.Helper()
	src, err := poolSource(drv)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	defer src.done()
	return requireManyInserted(ctx, tb, fn, src.exec, expected, opts)
}

// RequireManyInsertedTx is RequireManyInserted reading inside tx (see
// RequireInsertedTx).
func RequireManyInsertedTx[TTx any](ctx context.Context, tb testing.TB, drv driver.Driver[TTx], tx TTx, expected []ExpectedJob, opts *RequireManyInsertedOpts) []*millracetype.JobRow {
	const fn = "RequireManyInsertedTx"
	requireTB(tb, fn)
	tb.Helper()
	if ctx == nil {
		fatal(tb, fn, "ctx is nil")
		return nil
	}
	src, err := txSource(ctx, drv, tx)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	defer src.done()
	return requireManyInserted(ctx, tb, fn, src.exec, expected, opts)
}

// requireInserted is RequireInserted on an executor.
func requireInserted[TArgs client.JobArgs](ctx context.Context, tb testing.TB, fn string, exec driver.Executor, expectedArgs TArgs, opts *RequireInsertedOpts) *client.Job[TArgs] {
	tb.Helper()
	if ctx == nil {
		fatal(tb, fn, "ctx is nil")
		return nil
	}
	e, err := newExpectation(expectedArgs, opts)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	rows, err := listJobs(ctx, exec, e.opts.Schema, []string{e.kind})
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	if len(rows) == 0 {
		fatal(tb, fn, "%s", noJobsMessage(ctx, exec, e))
		return nil
	}
	var matches []*millracetype.JobRow
	for _, r := range rows {
		if len(e.diff(r)) == 0 {
			matches = append(matches, r)
		}
	}
	switch len(matches) {
	case 0:
		fatal(tb, fn, "none of the %s of kind %q in %s matches; the nearest (fewest differences, then newest):%s",
			jobsWord(len(rows)), e.kind, where(e.opts.Schema), nearestReport(e, rows))
		return nil
	case 1:
	default:
		fatal(tb, fn, "%d jobs of kind %q in %s match (ids %s), want exactly one: set more options to tell them apart, or use RequireManyInserted",
			len(matches), e.kind, where(e.opts.Schema), ids(matches))
		return nil
	}
	args, err := decodeArgs(matches[0], expectedArgs)
	if err != nil {
		fatal(tb, fn, "job %d matches, but %v", matches[0].ID, err)
		return nil
	}
	return &client.Job[TArgs]{JobRow: matches[0], Args: args}
}

// noJobsMessage says that no job of e's kind exists and names the kinds
// that do.
func noJobsMessage(ctx context.Context, exec driver.Executor, e *expectation) string {
	msg := fmt.Sprintf("no job of kind %q was inserted in %s", e.kind, where(e.opts.Schema))
	kinds, total, partial, err := otherKinds(ctx, exec, e.opts.Schema)
	switch {
	case err != nil:
		return msg + fmt.Sprintf(" (and listing the other kinds failed: %v)", err)
	case total == 0:
		return msg + "; it holds no jobs at all"
	case partial:
		return msg + fmt.Sprintf("; kinds found among the newest jobs, most recent first: %s", quoteAll(kinds))
	default:
		return msg + fmt.Sprintf("; it holds %s of other kinds, most recent first: %s", jobsWord(total), quoteAll(kinds))
	}
}

// quoteAll formats strings quoted, comma-separated.
func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

// requireNotInserted is RequireNotInserted on an executor.
func requireNotInserted(ctx context.Context, tb testing.TB, fn string, exec driver.Executor, expectedArgs client.JobArgs, opts *RequireInsertedOpts) {
	tb.Helper()
	if ctx == nil {
		fatal(tb, fn, "ctx is nil")
		return
	}
	e, err := newExpectation(expectedArgs, opts)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return
	}
	rows, err := listJobs(ctx, exec, e.opts.Schema, []string{e.kind})
	if err != nil {
		fatal(tb, fn, "%v", err)
		return
	}
	var matches []*millracetype.JobRow
	for _, r := range rows {
		if len(e.diff(r)) == 0 {
			matches = append(matches, r)
		}
	}
	if len(matches) == 0 {
		return
	}
	what := "of kind %q"
	if len(rows) != len(matches) || !isKindOnly(e) {
		what = "of kind %q matching the options"
	}
	fatal(tb, fn, "%s "+what+" in %s, want none (newest first):%s",
		foundWord(len(matches)), e.kind, where(e.opts.Schema), listReport(matches))
}

// foundWord is "found 1 job" or "found n jobs".
func foundWord(n int) string { return "found " + jobsWord(n) }

// isKindOnly reports whether e checks nothing but the kind.
func isKindOnly(e *expectation) bool {
	o := e.opts
	o.Schema = ""
	return reflect.ValueOf(o).IsZero()
}

// requireManyInserted is RequireManyInserted on an executor.
func requireManyInserted(ctx context.Context, tb testing.TB, fn string, exec driver.Executor, expected []ExpectedJob, opts *RequireManyInsertedOpts) []*millracetype.JobRow {
	tb.Helper()
	if ctx == nil {
		fatal(tb, fn, "ctx is nil")
		return nil
	}
	if len(expected) == 0 {
		fatal(tb, fn, "the list of expected jobs is empty (to require that no job of a kind was inserted, use RequireNotInserted)")
		return nil
	}
	var schema string
	if opts != nil {
		schema = opts.Schema
	}
	exps := make([]*expectation, len(expected))
	var kinds []string
	for i, ej := range expected {
		e, err := newExpectation(ej.Args, ej.Opts)
		if err != nil {
			fatal(tb, fn, "expected job %d: %v", i, err)
			return nil
		}
		if e.opts.Schema != "" && e.opts.Schema != schema {
			fatal(tb, fn, "expected job %d: Opts.Schema %q differs from RequireManyInsertedOpts.Schema %q (all jobs are read from one schema)",
				i, e.opts.Schema, schema)
			return nil
		}
		exps[i] = e
		if !slices.Contains(kinds, e.kind) {
			kinds = append(kinds, e.kind)
		}
	}
	rows, err := listJobs(ctx, exec, schema, kinds)
	if err != nil {
		fatal(tb, fn, "%v", err)
		return nil
	}
	var b strings.Builder
	bad := len(rows) != len(exps)
	for i := range max(len(rows), len(exps)) {
		switch {
		case i >= len(rows):
			fmt.Fprintf(&b, "\n  [%d] want a job of kind %q: missing", i, exps[i].kind)
		case i >= len(exps):
			fmt.Fprintf(&b, "\n  [%d] %s: not expected", i, describe(rows[i]))
		default:
			diffs := exps[i].diff(rows[i])
			if len(diffs) == 0 {
				fmt.Fprintf(&b, "\n  [%d] %s: ok", i, describe(rows[i]))
				continue
			}
			bad = true
			fmt.Fprintf(&b, "\n  [%d] %s:", i, describe(rows[i]))
			writeDiffs(&b, "      ", diffs)
		}
	}
	if bad {
		fatal(tb, fn, "the jobs of kinds %s in %s, in insertion order, are not the %d expected (found %d):%s",
			quoteAll(kinds), where(schema), len(exps), len(rows), b.String())
		return nil
	}
	return rows
}

// rawArgsType is the type of client.RawArgs, which is decoded apart: its
// kind comes from the row.
var rawArgsType = reflect.TypeFor[client.RawArgs]()

// decodeArgs decodes a row's args into TArgs as a worker would get them.
// When TArgs is an interface type, the args are decoded into the dynamic
// type of expected (which is not nil).
func decodeArgs[TArgs client.JobArgs](row *millracetype.JobRow, expected TArgs) (args TArgs, err error) {
	target := reflect.TypeFor[TArgs]()
	if target.Kind() == reflect.Interface {
		target = reflect.TypeOf(any(expected))
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoding its args into %s panicked: %v", target, r)
		}
	}()
	ptr := reflect.New(target)
	if target == rawArgsType {
		ptr.Elem().Set(reflect.ValueOf(client.NewRawArgs(row.Kind, bytes.Clone(row.Args))))
	} else if err := json.Unmarshal(row.Args, ptr.Interface()); err != nil {
		return args, fmt.Errorf("its args do not decode into %s: %w", target, err)
	}
	args, ok := ptr.Elem().Interface().(TArgs)
	if !ok {
		return args, fmt.Errorf("its args decode into %s, which is not a %s", target, reflect.TypeFor[TArgs]())
	}
	return args, nil
}
