package client

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/migrate"
)

// emptyKindArgs has an empty kind.
type emptyKindArgs struct{}

func (emptyKindArgs) Kind() string { return "" }

// badKindArgs has a kind the kind rule rejects.
type badKindArgs struct{}

func (badKindArgs) Kind() string { return "has space" }

// ptrArgs has a value receiver: calling Kind on a nil *ptrArgs panics.
type ptrArgs struct{ Name string }

func (ptrArgs) Kind() string { return "ptr_args" }

// ptrSafeArgs has a pointer receiver that never dereferences: a nil pointer
// is fine.
type ptrSafeArgs struct{ N int }

func (*ptrSafeArgs) Kind() string { return "ptr_safe" }

// panicOptsArgs panics in InsertOpts.
type panicOptsArgs struct{}

func (panicOptsArgs) Kind() string           { return "panic_opts" }
func (panicOptsArgs) InsertOpts() InsertOpts { panic("no options today") }

func noopWorker() Worker[noopArgs] {
	return WorkFunc(func(ctx context.Context, job *Job[noopArgs]) error { return nil })
}

func TestNewInvalidConfig(t *testing.T) {
	t.Parallel()
	drv := pgxv5.New(nil) // New validates before it touches the database
	withWorkers := func(add func(w *Workers)) *Workers {
		w := NewWorkers()
		add(w)
		return w
	}
	good := withWorkers(func(w *Workers) { AddWorker(w, noopWorker()) })
	tests := []struct {
		name    string
		cfg     *Config
		wantMsg string
		wantIs  error // another error the result must wrap, if any
	}{
		{"empty queue name", &Config{Queues: map[string]QueueConfig{"": {MaxWorkers: 1}}, Workers: good}, "queue name is empty", nil},
		{"upper-case queue", &Config{Queues: map[string]QueueConfig{"Default": {MaxWorkers: 1}}, Workers: good}, `queue name "Default" must match`, nil},
		{"double separator", &Config{Queues: map[string]QueueConfig{"a--b": {MaxWorkers: 1}}, Workers: good}, `queue name "a--b" must match`, nil},
		{"trailing separator", &Config{Queues: map[string]QueueConfig{"ab_": {MaxWorkers: 1}}, Workers: good}, `queue name "ab_" must match`, nil},
		{"queue too long", &Config{Queues: map[string]QueueConfig{strings.Repeat("q", 65): {MaxWorkers: 1}}, Workers: good}, "longer than 64 characters", nil},
		{"MaxWorkers 0", &Config{Queues: oneQueue(0), Workers: good}, `queue "default": MaxWorkers 0 out of range 1..10000`, nil},
		{"MaxWorkers 10001", &Config{Queues: oneQueue(10001), Workers: good}, `queue "default": MaxWorkers 10001 out of range 1..10000`, nil},
		{"FetchBuffer -2", &Config{Queues: map[string]QueueConfig{"default": {MaxWorkers: 1, FetchBuffer: -2}}, Workers: good}, `queue "default": FetchBuffer -2 out of range -1..10000`, nil},
		{"FetchBuffer 10001", &Config{Queues: map[string]QueueConfig{"default": {MaxWorkers: 1, FetchBuffer: 10001}}, Workers: good}, `queue "default": FetchBuffer 10001 out of range -1..10000`, nil},
		{"JobTimeout -2", &Config{JobTimeout: -2}, "JobTimeout -2ns: must be positive, or -1 for none", nil},
		{"MaxAttempts -1", &Config{MaxAttempts: -1}, "MaxAttempts -1 out of range 1..32767", nil},
		{"MaxAttempts 32768", &Config{MaxAttempts: 32768}, "MaxAttempts 32768 out of range 1..32767", nil},
		{"schema too long", &Config{Schema: strings.Repeat("s", 47)}, "longer than 46 characters", migrate.ErrInvalidSchema},
		{"schema invalid", &Config{Schema: "my-schema"}, `"my-schema" must match`, migrate.ErrInvalidSchema},
		{"schema starts with digit", &Config{Schema: "1abc"}, `"1abc" must match`, migrate.ErrInvalidSchema},
		{"ID too long", &Config{ID: strings.Repeat("i", 101)}, "is longer than 100 characters", nil},
		{"negative FetchCooldown", &Config{FetchCooldown: -time.Second}, "must not be negative", nil},
		{"negative FetchPollInterval", &Config{FetchPollInterval: -time.Second}, "must not be negative", nil},
		{"negative SubscribeBufferSize", &Config{SubscribeBufferSize: -1}, "SubscribeBufferSize must not be negative", nil},
		{"queues without workers", &Config{Queues: oneQueue(1)}, "Workers is required when Queues is set", nil},
		{"duplicate kind", &Config{Queues: oneQueue(1), Workers: withWorkers(func(w *Workers) {
			AddWorker(w, noopWorker())
			AddWorker(w, noopWorker())
		})}, `kind "noop": a worker for this kind is already registered`, ErrDuplicateKind},
		{"empty kind", &Config{Queues: oneQueue(1), Workers: withWorkers(func(w *Workers) {
			AddWorker(w, WorkFunc(func(context.Context, *Job[emptyKindArgs]) error { return nil }))
		})}, "Kind() returned an empty string", nil},
		{"invalid kind", &Config{Queues: oneQueue(1), Workers: withWorkers(func(w *Workers) {
			AddWorker(w, WorkFunc(func(context.Context, *Job[badKindArgs]) error { return nil }))
		})}, `kind "has space" must match`, nil},
		{"Kind panics on nil pointer", &Config{Queues: oneQueue(1), Workers: withWorkers(func(w *Workers) {
			AddWorker(w, WorkFunc(func(context.Context, *Job[*ptrArgs]) error { return nil }))
		})}, "Kind() panicked", nil},
		{"InsertOpts panics", &Config{Queues: oneQueue(1), Workers: withWorkers(func(w *Workers) {
			AddWorker(w, WorkFunc(func(context.Context, *Job[panicOptsArgs]) error { return nil }))
		})}, "InsertOpts() panicked: no options today", nil},
		{"negative SoftStopTimeout", &Config{SoftStopTimeout: -time.Second}, "SoftStopTimeout -1s must not be negative", nil},
		{"upper-case Domain", &Config{Domain: "Billing"}, `Domain: domain "Billing" must be lower-case letters and digits`, nil},
		{"Domain with a space", &Config{Domain: "svc a"}, `Domain: domain "svc a" must be`, nil},
		{"Domain with a dot", &Config{Domain: "svc.a"}, `Domain: domain "svc.a" must be`, nil},
		{"Domain ending in a dash", &Config{Domain: "svc-"}, `Domain: domain "svc-" must be`, nil},
		{"Domain too long", &Config{Domain: strings.Repeat("d", 65)}, "is longer than 64 characters", nil},
		// The first AddWorker error is the one reported.
		{"first error wins", &Config{Queues: oneQueue(1), Workers: withWorkers(func(w *Workers) {
			AddWorker(w, WorkFunc(func(context.Context, *Job[emptyKindArgs]) error { return nil }))
			AddWorker(w, WorkFunc(func(context.Context, *Job[badKindArgs]) error { return nil }))
		})}, "Kind() returned an empty string", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(drv, tc.cfg)
			if err == nil {
				t.Fatalf("New accepted the config (client %v)", c)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error does not wrap %v: %v", tc.wantIs, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
		})
	}
}

func TestNewNilDriverAndNoPool(t *testing.T) {
	t.Parallel()
	if _, err := New[pgx.Tx](nil, &Config{}); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "driver is nil") {
		t.Errorf("nil driver: %v", err)
	}
	workers := NewWorkers()
	AddWorker(workers, noopWorker())
	_, err := New(pgxv5.New(nil), &Config{Queues: oneQueue(1), Workers: workers})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "needs a driver with a pool") {
		t.Errorf("working client without a pool: %v", err)
	}
	// Without queues, a pool-less driver is fine (inserts in transactions).
	if _, err := New(pgxv5.New(nil), &Config{}); err != nil {
		t.Errorf("insert-only client without a pool: %v", err)
	}
	// A nil config is an insert-only client with defaults.
	c, err := New(pgxv5.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.config.MaxAttempts != MaxAttemptsDefault || c.config.JobTimeout != DefaultJobTimeout ||
		c.config.FetchCooldown != DefaultFetchCooldown || c.config.FetchPollInterval != DefaultFetchPollInterval ||
		c.config.SubscribeBufferSize != DefaultSubscribeBufferSize || c.config.Logger == nil || c.config.RetryPolicy == nil {
		t.Errorf("defaults not filled in: %+v", c.config)
	}
}

// TestNewDoesNotChangeCallersConfig: New works on a copy.
func TestNewDoesNotChangeCallersConfig(t *testing.T) {
	t.Parallel()
	cfg := &Config{Queues: map[string]QueueConfig{"a": {MaxWorkers: 1}}, Workers: NewWorkers()}
	AddWorker(cfg.Workers, noopWorker())
	db := testfixture.New(t)
	c, err := New(db.Driver, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ID != "" || cfg.MaxAttempts != 0 || cfg.Logger != nil || cfg.JobTimeout != 0 {
		t.Errorf("caller's config changed: %+v", cfg)
	}
	cfg.Queues["b"] = QueueConfig{MaxWorkers: 1}
	if _, ok := c.config.Queues["b"]; ok {
		t.Error("client shares the caller's Queues map")
	}
}

func TestAddWorkerSafely(t *testing.T) {
	t.Parallel()
	if err := AddWorkerSafely(nil, noopWorker()); err == nil || !strings.Contains(err.Error(), "workers is nil") {
		t.Errorf("nil workers: %v", err)
	}
	w := NewWorkers()
	if err := AddWorkerSafely[noopArgs](w, nil); err == nil || !strings.Contains(err.Error(), "worker is nil") {
		t.Errorf("nil worker: %v", err)
	}
	if err := AddWorkerSafely(w, WorkFunc(func(context.Context, *Job[emptyKindArgs]) error { return nil })); err == nil ||
		!strings.Contains(err.Error(), "empty string") {
		t.Errorf("empty kind: %v", err)
	}
	if err := AddWorkerSafely(w, WorkFunc(func(context.Context, *Job[*ptrArgs]) error { return nil })); err == nil ||
		!strings.Contains(err.Error(), "Kind() panicked") {
		t.Errorf("Kind panicking on a nil pointer: %v", err)
	}
	if err := AddWorkerSafely(w, WorkFunc(func(context.Context, *Job[panicOptsArgs]) error { return nil })); err == nil ||
		!strings.Contains(err.Error(), "InsertOpts() panicked") {
		t.Errorf("InsertOpts panicking: %v", err)
	}
	if err := AddWorkerSafely(w, noopWorker()); err != nil {
		t.Fatal(err)
	}
	if err := AddWorkerSafely(w, noopWorker()); !errors.Is(err, ErrDuplicateKind) {
		t.Errorf("duplicate kind: %v", err)
	}
	// A pointer receiver that does not dereference works with a nil pointer.
	if err := AddWorkerSafely(w, WorkFunc(func(context.Context, *Job[*ptrSafeArgs]) error { return nil })); err != nil {
		t.Errorf("pointer args with a safe Kind: %v", err)
	}
	// Errors from AddWorkerSafely are not remembered: the set stays usable.
	if _, err := New(pgxv5.New(nil), &Config{Workers: w}); err != nil {
		t.Errorf("New after AddWorkerSafely errors: %v", err)
	}
	if got := strings.Join(sortedKinds(w), ","); got != "noop,ptr_safe" {
		t.Errorf("kinds %s", got)
	}
	// A zero Workers (not made with NewWorkers) still works.
	var zero Workers
	if err := AddWorkerSafely(&zero, noopWorker()); err != nil || zero.lookup("noop") == nil {
		t.Errorf("zero Workers: %v", err)
	}
}

func sortedKinds(w *Workers) []string {
	kinds := w.kinds()
	for i := range kinds {
		for j := i + 1; j < len(kinds); j++ {
			if kinds[j] < kinds[i] {
				kinds[i], kinds[j] = kinds[j], kinds[i]
			}
		}
	}
	return kinds
}

func TestDefaultClientID(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 5, 7, 8, 9, 123456789, time.FixedZone("X", 3*3600))
	id := defaultClientID(at)
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "millrace"
	}
	host = strings.ReplaceAll(host, ".", "_")
	if len(host) > 60 {
		host = host[:60]
	}
	// Start time in UTC, microseconds, underscores.
	if want := host + "_2026_03_05T04_08_09_123456"; id != want {
		t.Errorf("ID %q, want %q", id, want)
	}
	if strings.Contains(id, ".") || len(id) > 100 {
		t.Errorf("ID %q has dots or is too long", id)
	}

	c, err := New(pgxv5.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[^.]{1,60}_\d{4}_\d{2}_\d{2}T\d{2}_\d{2}_\d{2}_\d{6}$`).MatchString(c.ID()) {
		t.Errorf("default ID %q", c.ID())
	}
	c, err = New(pgxv5.New(nil), &Config{ID: "mine"})
	if err != nil || c.ID() != "mine" {
		t.Errorf("ID %v %v", c, err)
	}
}

func TestInsertOnlyClientStart(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	c := newClient(t, db, nil)
	if err := c.Start(context.Background()); !errors.Is(err, ErrNoQueues) {
		t.Fatalf("Start of an insert-only client: %v", err)
	}
	// Stop of a client that never started is harmless.
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// It still inserts.
	if _, err := c.Insert(context.Background(), noopArgs{}, nil); err != nil {
		t.Fatal(err)
	}
}
