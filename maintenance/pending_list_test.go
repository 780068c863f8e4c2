package maintenance

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testlog"
)

// plStub is a driver.PendingListCleaner for config tests.
type plStub struct{}

func (plStub) PendingListClean(context.Context, *driver.PendingListCleanParams) (*driver.PendingListCleanResult, error) {
	return &driver.PendingListCleanResult{}, nil
}

// plRecorder passes calls on to a real cleaner (or fails them with err)
// and records what each returned.
type plRecorder struct {
	next  driver.PendingListCleaner
	err   error
	calls atomic.Int64
	mu    sync.Mutex
	pages []int64
}

func (r *plRecorder) PendingListClean(ctx context.Context, p *driver.PendingListCleanParams) (*driver.PendingListCleanResult, error) {
	r.calls.Add(1)
	if r.err != nil {
		return nil, r.err
	}
	res, err := r.next.PendingListClean(ctx, p)
	if err == nil {
		r.mu.Lock()
		r.pages = append(r.pages, res.Pages)
		r.mu.Unlock()
	}
	return res, err
}

func TestPendingListInterval(t *testing.T) {
	t.Parallel()
	const limit = 4 << 20 // 512 pages: the target is 128 a pass
	minI, maxI := 100*time.Millisecond, 2*time.Second
	for _, tc := range []struct {
		name     string
		interval time.Duration
		pages    int64
		limit    int64
		want     time.Duration
	}{
		{"empty lists double the wait", time.Second, 0, limit, 2 * time.Second},
		{"doubling stops at the max", 1500 * time.Millisecond, 0, limit, maxI},
		{"on target keeps it", time.Second, 128, limit, time.Second},
		{"half the target doubles it", 400 * time.Millisecond, 64, limit, 800 * time.Millisecond},
		{"twice the target halves it", time.Second, 256, limit, 500 * time.Millisecond},
		{"a full list quarters it at most", time.Second, 512, limit, 250 * time.Millisecond},
		{"the min bounds it", 200 * time.Millisecond, 5000, limit, minI},
		{"a smaller limit shortens it", time.Second, 128, 1 << 20, 250 * time.Millisecond},
		{"no limit given: 4 MB", time.Second, 128, 0, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextPendingListInterval(tc.interval, tc.pages, tc.limit, minI, maxI); got != tc.want {
				t.Errorf("nextPendingListInterval(%s, %d pages, %d B) = %s, want %s", tc.interval, tc.pages, tc.limit, got, tc.want)
			}
		})
	}
}

// The cleaner merges the pending lists the inserts grew: its first pass
// finds pages, and the lists are empty after it.
func TestPendingListCleaner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	pl, ok := db.Exec().(driver.PendingListCleaner)
	if !ok {
		t.Fatalf("%T is not a driver.PendingListCleaner", db.Exec())
	}
	// Empty the lists the fixture's own inserts may have left, then grow
	// them: every job adds an entry to each index's list.
	if _, err := pl.PendingListClean(ctx, &driver.PendingListCleanParams{Schema: db.Schema}); err != nil {
		t.Fatal(err)
	}
	db.InsertJobs(t, 3000, "k", "q")

	rec := &plRecorder{next: pl}
	passes := make(chan struct{}, 1)
	s, err := NewPendingListCleaner(rec, &PendingListCleanerConfig{Schema: db.Schema, MinInterval: time.Hour, MaxInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s.passes = passes
	onePass(t, s, passes)
	rec.mu.Lock()
	pages := append([]int64(nil), rec.pages...)
	rec.mu.Unlock()
	if len(pages) != 1 || pages[0] <= 0 {
		t.Fatalf("the first pass merged %v pages, want one pass that merged some", pages)
	}
	res, err := pl.PendingListClean(ctx, &driver.PendingListCleanParams{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pages != 0 || res.LimitBytes <= 0 {
		t.Fatalf("after the pass: %d pages left to merge, limit %d B; want 0 pages and the session's limit", res.Pages, res.LimitBytes)
	}
}

// A role that does not own the indexes gets ErrNotIndexOwner from the
// driver; the cleaner then says so once and makes no more passes.
func TestPendingListCleanerNotOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	role := "millrace_pl_" + strings.TrimPrefix(db.Schema, "millrace_")
	for _, stmt := range []string{
		`CREATE ROLE "` + role + `"`,
		`GRANT USAGE ON SCHEMA "` + db.Schema + `" TO "` + role + `"`,
	} {
		if _, err := db.Pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, stmt := range []string{`DROP OWNED BY "` + role + `"`, `DROP ROLE "` + role + `"`} {
			if _, err := db.Pool.Exec(context.Background(), stmt); err != nil {
				t.Error(err)
			}
		}
	})
	pgTx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pgTx.Rollback(ctx)
	if _, err := pgTx.Exec(ctx, `SET LOCAL ROLE "`+role+`"`); err != nil {
		t.Fatal(err)
	}
	tx := db.Driver.UnwrapExecutor(pgTx)
	_, err = tx.(driver.PendingListCleaner).PendingListClean(ctx, &driver.PendingListCleanParams{Schema: db.Schema})
	if !errors.Is(err, driver.ErrNotIndexOwner) {
		t.Fatalf("a non-owner's clean: %v, want ErrNotIndexOwner", err)
	}

	rec := &plRecorder{err: err}
	logs := &testlog.Buffer{}
	passes := make(chan struct{}, 1)
	s, err := NewPendingListCleaner(rec, &PendingListCleanerConfig{Schema: db.Schema, Logger: logs.Logger(),
		MinInterval: time.Millisecond, MaxInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.passes = passes
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-passes
	// At 1 ms intervals a cleaner that kept trying would have made about
	// a hundred passes by now.
	time.Sleep(100 * time.Millisecond)
	s.Stop()
	if n := rec.calls.Load(); n != 1 {
		t.Errorf("%d passes after the refusal, want 1", n)
	}
	if got := strings.Count(logs.String(), "does not own the indexes"); got != 1 {
		t.Errorf("the refusal logged %d times, want once:\n%s", got, logs.String())
	}
}
