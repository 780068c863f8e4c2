package client

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

func TestRateLimitBadInput(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	ok := RateLimit{N: 10, Interval: time.Minute}
	for _, c := range []struct {
		name string
		lims []RateLimit
		want string
	}{
		{"zero rate", []RateLimit{{N: 0, Interval: time.Minute}}, "at least 1 per interval"},
		{"negative rate", []RateLimit{{N: -1, Interval: time.Minute}}, "at least 1 per interval"},
		{"no interval", []RateLimit{{N: 5}}, "whole number of milliseconds"},
		{"short interval", []RateLimit{{N: 5, Interval: 50 * time.Millisecond}}, "whole number of milliseconds"},
		{"long interval", []RateLimit{{N: 5, Interval: 25 * time.Hour}}, "whole number of milliseconds"},
		{"fractional interval", []RateLimit{{N: 5, Interval: time.Second + time.Microsecond}}, "whole number of milliseconds"},
		{"bad kind", []RateLimit{{N: 5, Interval: time.Minute, Kind: "a b"}}, "kind"},
		{"kind by kind", []RateLimit{{N: 5, Interval: time.Minute, Kind: "kk", PartitionByKind: true}}, "PartitionByKind"},
		{"empty args key", []RateLimit{{N: 5, Interval: time.Minute, PartitionByArgs: []string{""}}}, "PartitionByArgs"},
		{"args key twice", []RateLimit{{N: 5, Interval: time.Minute, PartitionByArgs: []string{"a", "a"}}}, "twice"},
		{"too many", func() []RateLimit {
			l := make([]RateLimit, MaxRateLimits+1)
			for i := range l {
				l[i] = ok
			}
			return l
		}(), "at most"},
	} {
		_, err := New(db.Driver, &Config{Schema: db.Schema, Workers: NewWorkers(),
			Queues: map[string]QueueConfig{QueueDefault: {MaxWorkers: 1, RateLimits: c.lims}}})
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New gave %v, want ErrInvalidConfig about %q", c.name, err, c.want)
		}
	}
	c := newClient(t, db, &Config{Workers: NewWorkers(), Queues: oneQueue(1)})
	if err := c.Queues().Add("other", QueueConfig{MaxWorkers: 1, RateLimits: []RateLimit{{N: 0, Interval: time.Minute}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Queues().Add with a rate of 0: %v", err)
	}
	if err := c.Queues().Add("other", QueueConfig{MaxWorkers: 1, RateLimits: []RateLimit{ok}}); err != nil {
		t.Errorf("Queues().Add with a good limit: %v", err)
	}
}

func TestPauseUntilBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c := newClient(t, db, &Config{})
	later := time.Now().Add(time.Minute)
	for _, f := range []struct {
		name  string
		queue string
		until time.Time
		opts  *PauseOpts
	}{
		{"bad queue", "Bad Queue", later, nil},
		{"empty queue", "", later, nil},
		{"bad kind", "q", later, &PauseOpts{Kind: "a b"}},
		{"args array", "q", later, &PauseOpts{Args: []int{1}}},
		{"args text", "q", later, &PauseOpts{Args: []byte(`"x"`)}},
		{"args not JSON", "q", later, &PauseOpts{Args: json.RawMessage(`{`)}},
		{"args unencodable", "q", later, &PauseOpts{Args: map[string]any{"f": func() {}}}},
		{"past", "q", time.Now().Add(-time.Second), nil},
		{"zero time", "q", time.Time{}, nil},
		{"too far", "q", time.Now().Add(MaxPause + time.Hour), nil},
	} {
		if _, err := c.PauseUntil(ctx, f.queue, f.until, f.opts); !errors.Is(err, ErrInvalidArgs) {
			t.Errorf("%s: PauseUntil gave %v, want ErrInvalidArgs", f.name, err)
		}
	}
	if _, err := c.PauseDelete(ctx, "Bad", nil); !errors.Is(err, ErrInvalidArgs) {
		t.Errorf("PauseDelete of a bad queue: %v", err)
	}
	if _, err := c.PauseList(ctx, "Bad"); !errors.Is(err, ErrInvalidArgs) {
		t.Errorf("PauseList of a bad queue: %v", err)
	}
	if err := JobPauseUntil(ctx, later, nil); !errors.Is(err, ErrNotInWorker) {
		t.Errorf("JobPauseUntil outside a worker: %v", err)
	}
	ps, err := c.PauseList(ctx, "")
	if err != nil || len(ps) != 0 {
		t.Fatalf("pauses after bad input: %v, %v", ps, err)
	}
}

type tokenArgs struct {
	Token string `json:"token"`
	N     int    `json:"n"`
}

func (tokenArgs) Kind() string { return "token_job" }

// TestJobPauseUntil: a worker told to back off pauses its token's jobs
// until a time and its job is snoozed until then; the other token's jobs
// go on; the paused ones start again by themselves after the time.
func TestJobPauseUntil(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	var (
		mu      sync.Mutex
		until   time.Time
		started = map[int]time.Time{} // job n → first start of token a's jobs after the first
	)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[tokenArgs]) error {
		mu.Lock()
		defer mu.Unlock()
		if job.Args.Token == "a" && until.IsZero() {
			until = time.Now().Add(1500 * time.Millisecond)
			return JobPauseUntil(ctx, until, &JobPauseOpts{ByArgs: []string{"token", "missing"}})
		}
		if job.Args.Token == "a" {
			if _, seen := started[job.Args.N]; !seen {
				started[job.Args.N] = time.Now()
			}
		}
		return nil
	}))
	c := newClient(t, db, &Config{Workers: workers, Queues: map[string]QueueConfig{QueueDefault: {MaxWorkers: 1,
		RateLimits: []RateLimit{{N: 1000, Interval: time.Minute, PartitionByArgs: []string{"token"}}}}}})
	var ids []int64
	for n := range 4 {
		for _, tok := range []string{"a", "b"} {
			r, err := c.Insert(ctx, tokenArgs{Token: tok, N: n}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, r.Job.ID)
		}
	}
	start(t, c)
	// Token b's jobs complete while a is paused.
	for i := 1; i < len(ids); i += 2 {
		waitState(t, db, ids[i], millracetype.JobStateCompleted)
	}
	mu.Lock()
	u := until
	mu.Unlock()
	if u.IsZero() || time.Now().After(u) {
		t.Fatalf("token b's jobs were not done within the pause (until %v)", u)
	}
	ps, err := c.PauseList(ctx, QueueDefault)
	if err != nil || len(ps) != 1 || string(ps[0].Args) != `{"token": "a"}` || ps[0].Kind != "" {
		t.Fatalf("pauses: %v, %v", ps, err)
	}
	for i := 0; i < len(ids); i += 2 {
		waitState(t, db, ids[i], millracetype.JobStateCompleted)
	}
	mu.Lock()
	defer mu.Unlock()
	for n, at := range started {
		if at.Before(u) {
			t.Errorf("token a's job %d started at %v, before the pause's end %v", n, at, u)
		}
	}
	if len(started) != 4 {
		t.Errorf("token a's jobs started after the pause: %d, want 4 (the snoozed one too)", len(started))
	}
}

func TestJobPauseUntilNeedsFlowControl(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	errc := make(chan error, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[tokenArgs]) error {
		err := JobPauseUntil(ctx, time.Now().Add(time.Minute), nil)
		errc <- err
		return nil
	}))
	c := newClient(t, db, &Config{Workers: workers, Queues: oneQueue(1)})
	if _, err := c.Insert(ctx, tokenArgs{Token: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	start(t, c)
	if err := recv(t, errc, "the worker's JobPauseUntil"); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("JobPauseUntil in a queue without flow control: %v", err)
	}
	if ps, err := c.PauseList(ctx, ""); err != nil || len(ps) != 0 {
		t.Fatalf("pauses: %v, %v", ps, err)
	}
}
