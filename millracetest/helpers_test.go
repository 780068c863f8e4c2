package millracetest_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// fakeTB records what an assertion reports instead of failing the test,
// so that failures can be checked. Fatal calls record the message and
// stop the goroutine, as the testing package does; methods not overridden
// go to the real test.
type fakeTB struct {
	testing.TB

	mu     sync.Mutex
	msgs   []string
	fatals int
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) record(msg string, fatal bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, msg)
	if fatal {
		f.fatals++
	}
}

func (f *fakeTB) Errorf(format string, args ...any) { f.record(fmt.Sprintf(format, args...), false) }
func (f *fakeTB) Error(args ...any)                 { f.record(fmt.Sprint(args...), false) }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.record(fmt.Sprintf(format, args...), true)
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) {
	f.record(fmt.Sprint(args...), true)
	runtime.Goexit()
}
func (f *fakeTB) FailNow() {
	f.record("FailNow", true)
	runtime.Goexit()
}
func (f *fakeTB) Fail() { f.record("Fail", false) }

// outcome is what an assertion run against a fakeTB did.
type outcome struct {
	msgs []string
	// stopped is true when the goroutine stopped (Fatal) instead of
	// returning.
	stopped bool
}

// run calls fn with a fakeTB in a goroutine of its own and waits for it
// to return or stop.
func run(t *testing.T, fn func(tb testing.TB)) outcome {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan bool)
	go func() {
		returned := false
		defer func() { done <- returned }()
		fn(f)
		returned = true
	}()
	returned := <-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return outcome{msgs: append([]string(nil), f.msgs...), stopped: !returned}
}

// mustPass fails t unless fn reported nothing.
func mustPass(t *testing.T, fn func(tb testing.TB)) {
	t.Helper()
	if o := run(t, fn); len(o.msgs) != 0 || o.stopped {
		t.Fatalf("the assertion failed, want it to pass; it reported:\n%s", strings.Join(o.msgs, "\n"))
	}
}

// mustFail fails t unless fn failed with one Fatal message containing
// every one of wants; it returns the message.
func mustFail(t *testing.T, fn func(tb testing.TB), wants ...string) string {
	t.Helper()
	o := run(t, fn)
	if !o.stopped || len(o.msgs) != 1 {
		t.Fatalf("want one fatal failure, got stopped=%v and %d messages:\n%s", o.stopped, len(o.msgs), strings.Join(o.msgs, "\n"))
	}
	msg := o.msgs[0]
	if !strings.HasPrefix(msg, "millracetest: ") {
		t.Errorf("message does not start with the package name: %s", msg)
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("message lacks %q:\n%s", w, msg)
		}
	}
	return msg
}

// fixture is a migrated schema and an insert-only client on it.
type fixture struct {
	db     *testfixture.DB
	client *client.Client[pgx.Tx]
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := testfixture.New(t)
	c, err := client.New(db.Driver, &client.Config{Schema: db.Schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, client: c}
}

// insert inserts one job and returns its id.
func (f *fixture) insert(t *testing.T, args client.JobArgs, opts *client.InsertOpts) int64 {
	t.Helper()
	res, err := f.client.Insert(context.Background(), args, opts)
	if err != nil {
		t.Fatalf("insert %s: %v", args.Kind(), err)
	}
	return res.Job.ID
}

// emailArgs are the args of the jobs most tests insert.
type emailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject,omitempty"`
}

func (emailArgs) Kind() string { return "email" }

// smsArgs are a second kind.
type smsArgs struct {
	Number string `json:"number"`
}

func (smsArgs) Kind() string { return "sms" }

// namedArgs have their kind chosen at run time, so that subtests sharing a
// schema use kinds of their own.
type namedArgs struct {
	kind string
	N    int `json:"n"`
}

func (a namedArgs) Kind() string { return a.kind }

// panicArgs panic in Kind.
type panicArgs struct{}

func (panicArgs) Kind() string { panic("no kind today") }
