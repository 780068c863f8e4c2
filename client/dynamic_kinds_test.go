package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// tenantArgs is one Go type for several kinds, chosen at run time.
type tenantArgs struct {
	kind   string
	Tenant string `json:"tenant"`
}

func (a tenantArgs) Kind() string { return a.kind }

// panickyArgs has a pointer receiver: Kind on a nil value panics.
type panickyArgs struct{ K string }

func (a *panickyArgs) Kind() string { return a.K }

// seen records what workers were handed.
type seen struct {
	mu   sync.Mutex
	jobs map[int64]string
}

func (s *seen) add(id int64, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jobs == nil {
		s.jobs = map[int64]string{}
	}
	s.jobs[id] = what
}

func (s *seen) get(id int64) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[id]
}

// TestAddWorkerArgs: one args type registered for two kinds, each with its
// own worker; inserts take the kind from the value.
func TestAddWorkerArgs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	var got seen
	workers := NewWorkers()
	for _, kind := range []string{"tenant.acme", "tenant.globex"} {
		AddWorkerArgs(workers, tenantArgs{kind: kind}, WorkFunc(func(ctx context.Context, job *Job[tenantArgs]) error {
			got.add(job.ID, kind+" "+job.Kind+" "+job.Args.Tenant)
			return nil
		}))
	}
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers})
	start(t, c)
	acme, err := c.Insert(ctx, tenantArgs{kind: "tenant.acme", Tenant: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	globex, err := c.Insert(ctx, tenantArgs{kind: "tenant.globex", Tenant: "g"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if acme.Job.Kind != "tenant.acme" || !jsonEq(t, acme.Job.Args, `{"tenant":"a"}`) {
		t.Fatalf("inserted %s %s", acme.Job.Kind, acme.Job.Args)
	}
	waitState(t, db, acme.Job.ID, millracetype.JobStateCompleted)
	waitState(t, db, globex.Job.ID, millracetype.JobStateCompleted)
	if g := got.get(acme.Job.ID); g != "tenant.acme tenant.acme a" {
		t.Errorf("acme job: %q", g)
	}
	if g := got.get(globex.Job.ID); g != "tenant.globex tenant.globex g" {
		t.Errorf("globex job: %q", g)
	}
	// A kind of the type that has no worker is left alone.
	other, err := c.Insert(ctx, tenantArgs{kind: "tenant.initech"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	after, err := c.Insert(ctx, tenantArgs{kind: "tenant.acme"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, db, after.Job.ID, millracetype.JobStateCompleted)
	if j := db.Job(t, other.Job.ID); j.State != millracetype.JobStateAvailable || j.Attempt != 0 {
		t.Errorf("job of an unregistered kind: %s attempt %d", j.State, j.Attempt)
	}
}

func TestAddWorkerArgsBadInput(t *testing.T) {
	t.Parallel()
	noop := WorkFunc(func(ctx context.Context, job *Job[tenantArgs]) error { return nil })
	workers := NewWorkers()
	if err := AddWorkerArgsSafely(workers, tenantArgs{kind: "tenant.a"}, noop); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		add  func() error
		want string
	}{
		{"empty kind", func() error { return AddWorkerArgsSafely(workers, tenantArgs{}, noop) }, "empty string"},
		{"invalid kind", func() error { return AddWorkerArgsSafely(workers, tenantArgs{kind: "a b"}, noop) }, "must match"},
		{"one character", func() error { return AddWorkerArgsSafely(workers, tenantArgs{kind: "a"}, noop) }, "must match"},
		{"duplicate", func() error { return AddWorkerArgsSafely(workers, tenantArgs{kind: "tenant.a"}, noop) }, "already registered"},
		{"nil worker", func() error { return AddWorkerArgsSafely[tenantArgs](workers, tenantArgs{kind: "tenant.b"}, nil) }, "worker is nil"},
		{"nil workers", func() error { return AddWorkerArgsSafely(nil, tenantArgs{kind: "tenant.b"}, noop) }, "workers is nil"},
		{"panicking Kind", func() error {
			return AddWorkerArgsSafely(workers, (*panickyArgs)(nil), WorkFunc(func(ctx context.Context, job *Job[*panickyArgs]) error { return nil }))
		}, "panicked"},
	} {
		err := tc.add()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := AddWorkerArgsSafely(workers, tenantArgs{kind: "tenant.a"}, noop); !errors.Is(err, ErrDuplicateKind) {
		t.Errorf("duplicate: %v", err)
	}
	if got := len(workers.kinds()); got != 1 {
		t.Errorf("%d kinds registered after the refusals", got)
	}
	// AddWorkerArgs keeps the error for New.
	bad := NewWorkers()
	AddWorkerArgs(bad, tenantArgs{}, noop)
	AddWorkerArgs(nil, tenantArgs{kind: "tenant.c"}, noop) // nothing to remember it in; no panic
	if _, err := New(testfixture.New(t).Driver, &Config{Workers: bad}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a bad AddWorkerArgs: %v", err)
	}
}

// TestRawWorker: a raw worker serves several kinds with the args JSON as
// stored; raw args insert as given; errors and retries work as for typed
// workers.
func TestRawWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	var got seen
	raw := WorkFunc(func(ctx context.Context, job *Job[RawArgs]) error {
		if job.Args.Kind() != job.Kind {
			return errors.New("args kind " + job.Args.Kind() + " is not the job's")
		}
		stored, err := db.Exec().JobGetByID(ctx, &driver.JobGetByIDParams{Schema: db.Schema, ID: job.ID})
		if err != nil {
			return err
		}
		if !bytes.Equal(job.Args.JSON, stored.Args) {
			return errors.New("args are not the stored JSON")
		}
		got.add(job.ID, job.Kind+" "+string(job.Args.JSON))
		var body struct {
			Fail bool `json:"fail"`
		}
		if err := json.Unmarshal(job.Args.JSON, &body); err != nil {
			return err
		}
		if body.Fail {
			return errors.New("asked to fail")
		}
		return nil
	})
	workers := NewWorkers()
	AddRawWorker(workers, "proxy.resize", raw)
	AddRawWorker(workers, "noop", raw) // also the kind of a typed args struct
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers})
	start(t, c)

	resize, err := c.Insert(ctx, NewRawArgs("proxy.resize", json.RawMessage(`{"w": 10, "h": [1, 2]}`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	typed, err := c.Insert(ctx, noopArgs{N: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := c.Insert(ctx, NewRawArgs("proxy.resize", nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	failing, err := c.Insert(ctx, NewRawArgs("noop", json.RawMessage(`{"fail":true}`)), &InsertOpts{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{resize.Job.ID, typed.Job.ID, empty.Job.ID} {
		waitState(t, db, id, millracetype.JobStateCompleted)
	}
	for id, want := range map[int64][2]string{
		resize.Job.ID: {"proxy.resize", `{"w":10,"h":[1,2]}`},
		typed.Job.ID:  {"noop", `{"n":7}`},
		empty.Job.ID:  {"proxy.resize", `{}`},
	} {
		kind, args, _ := strings.Cut(got.get(id), " ")
		if kind != want[0] || !jsonEq(t, []byte(args), want[1]) {
			t.Errorf("job %d: worker saw kind %q args %s, want %s %s", id, kind, args, want[0], want[1])
		}
	}
	f := waitState(t, db, failing.Job.ID, millracetype.JobStateDiscarded)
	if len(f.Errors) != 1 || f.Errors[0].Error != "asked to fail" {
		t.Errorf("failing raw job errors %v", f.Errors)
	}

	// Raw args are unique by their JSON like any args.
	opts := &InsertOpts{UniqueOpts: UniqueOpts{ByArgs: true}, Queue: "elsewhere"}
	first, err := c.Insert(ctx, NewRawArgs("proxy.resize", json.RawMessage(`{"a":1,"b":2}`)), opts)
	if err != nil {
		t.Fatal(err)
	}
	dup, err := c.Insert(ctx, NewRawArgs("proxy.resize", json.RawMessage(`{"b":2, "a":1}`)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !dup.UniqueSkippedAsDuplicate || dup.Job.ID != first.Job.ID {
		t.Errorf("duplicate raw args inserted: %+v", dup)
	}
}

func TestRawWorkerBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	noop := WorkFunc(func(ctx context.Context, job *Job[RawArgs]) error { return nil })
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil }))
	for _, tc := range []struct {
		kind   string
		worker Worker[RawArgs]
		want   string
	}{
		{"", noop, "kind is empty"},
		{"x", noop, "must match"},
		{"has space", noop, "must match"},
		{"noop", noop, "already registered"},
		{"fine", nil, "worker is nil"},
	} {
		if err := AddRawWorkerSafely(workers, tc.kind, tc.worker); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddRawWorkerSafely(%q): %v, want %q", tc.kind, err, tc.want)
		}
	}
	// RawArgs cannot be worked without a kind: AddWorker of them fails.
	if err := AddWorkerSafely(workers, noop); err == nil || !strings.Contains(err.Error(), "empty string") {
		t.Errorf("AddWorker for RawArgs: %v", err)
	}
	bad := NewWorkers()
	AddRawWorker(bad, "", noop)
	if _, err := New(db.Driver, &Config{Workers: bad}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New after a bad AddRawWorker: %v", err)
	}

	c := newClient(t, db, nil)
	for _, tc := range []struct {
		args RawArgs
		want string
	}{
		{NewRawArgs("", json.RawMessage(`{}`)), "empty string"},
		{NewRawArgs("k k", json.RawMessage(`{}`)), "must match"},
		{NewRawArgs("kind", json.RawMessage(`[1]`)), "not a JSON object"},
		{NewRawArgs("kind", json.RawMessage(`"s"`)), "not a JSON object"},
		{NewRawArgs("kind", json.RawMessage(`{"a":`)), "encode args"},
		{RawArgs{JSON: json.RawMessage(`{}`)}, "empty string"},
	} {
		if _, err := c.Insert(ctx, tc.args, nil); !errors.Is(err, ErrInvalidArgs) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Insert(%q, %s): %v, want %q", tc.args.Kind(), tc.args.JSON, err, tc.want)
		}
	}
	if n := len(db.CountByState(t)); n != 0 {
		t.Errorf("refused inserts wrote jobs: %v", db.CountByState(t))
	}
}
