package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// logSink is a goroutine-safe log destination for tests.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor waits until the sink holds substr (10 s at most).
func (s *logSink) waitFor(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("log never contained %q; got:\n%s", substr, s.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *logSink) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// noTime formats records without their time, so tests can predict lines.
func noTime(w io.Writer) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
}

// soonRetry retries a failed job at once (well, in a millisecond).
type soonRetry struct{}

func (soonRetry) NextRetry(*millracetype.JobRow) time.Time { return time.Now().Add(time.Millisecond) }

type logArgs struct {
	Mode  string `json:"mode"`
	Lines int    `json:"lines"`
}

func (logArgs) Kind() string { return "log_job" }

func mustJobLogMiddleware(t *testing.T, cfg *JobLogConfig) *JobLogMiddleware {
	t.Helper()
	m, err := NewJobLogMiddleware(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// storedLogs decodes the metadata's "river:log" value generically, to check
// the exact shape River reads: an array of objects with exactly the keys
// attempt (a number) and log (a string).
func storedLogs(t *testing.T, job *millracetype.JobRow) []JobLogEntry {
	t.Helper()
	var md map[string]json.RawMessage
	if err := json.Unmarshal(job.Metadata, &md); err != nil {
		t.Fatalf("metadata %s: %v", job.Metadata, err)
	}
	raw, ok := md[JobLogMetadataKey]
	if !ok {
		return nil
	}
	var generic []map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatalf("river:log %s: %v", raw, err)
	}
	var out []JobLogEntry
	for _, e := range generic {
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range e {
				if !yield(k) {
					return
				}
			}
		})
		attempt, okA := e["attempt"].(float64)
		text, okL := e["log"].(string)
		if !slices.Equal(keys, []string{"attempt", "log"}) || !okA || !okL {
			t.Fatalf("river:log entry %v: want exactly a numeric attempt and a string log", e)
		}
		out = append(out, JobLogEntry{Attempt: int(attempt), Log: text})
	}
	// JobLogs reads the same.
	parsed, err := JobLogs(job)
	if err != nil || !slices.Equal(parsed, out) {
		t.Fatalf("JobLogs = %v, %v; stored %v", parsed, err, out)
	}
	return out
}

// TestJobLogMiddleware works a job that fails once and then completes, on a
// row that already holds an entry written by River and metadata of its
// own: each attempt's lines are appended in River's shape, the earlier
// entry and the other keys are kept, and the pass-through handler gets
// every line with the job's attributes.
func TestJobLogMiddleware(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	pass := &logSink{}
	mw := mustJobLogMiddleware(t, &JobLogConfig{NewHandler: noTime,
		PassThrough: slog.NewJSONHandler(pass, &slog.HandlerOptions{Level: slog.LevelDebug})})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[logArgs]) error {
		log := JobLogger(ctx)
		log.Info("working", "attempt", job.Attempt)
		log.Debug("not kept: below the default handler's level")
		log.With("step", "send").WithGroup("mail").Warn("deferred", "to", "ada")
		if job.Attempt == 1 {
			log.Error("giving up this attempt")
			return errors.New("first attempt fails")
		}
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(2), Workers: workers, RetryPolicy: soonRetry{},
		WorkerMiddleware: []WorkerMiddleware{mw}})
	row := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "log_job", Args: []byte(`{"mode":"retry"}`), MaxAttempts: 5,
		State:    millracetype.JobStateAvailable,
		Metadata: []byte(`{"keep": "me", "river:log": [{"attempt": 1, "log": "from River\n"}]}`)})
	start(t, c)
	job := waitState(t, db, row.ID, millracetype.JobStateCompleted)

	want := []JobLogEntry{
		{Attempt: 1, Log: "from River\n"},
		{Attempt: 1, Log: "level=INFO msg=working attempt=1\n" +
			"level=WARN msg=deferred step=send mail.to=ada\n" +
			"level=ERROR msg=\"giving up this attempt\"\n"},
		{Attempt: 2, Log: "level=INFO msg=working attempt=2\n" +
			"level=WARN msg=deferred step=send mail.to=ada\n"},
	}
	if got := storedLogs(t, job); !slices.Equal(got, want) {
		t.Errorf("logs:\n%+v\nwant\n%+v", got, want)
	}
	if !millracetype.MetadataHasKey(job.Metadata, "keep") {
		t.Errorf("metadata lost a key: %s", job.Metadata)
	}
	if len(job.Errors) != 1 || job.Errors[0].Error != "first attempt fails" {
		t.Errorf("errors %+v", job.Errors)
	}

	// The pass-through handler saw every line of both attempts, with the
	// job's attributes, debug included (its own level).
	var passed []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(pass.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("pass-through line %q: %v", line, err)
		}
		passed = append(passed, rec)
	}
	if len(passed) != 7 {
		t.Fatalf("pass-through got %d records, want 7:\n%s", len(passed), pass.String())
	}
	for _, rec := range passed {
		if rec["job_id"] != float64(row.ID) || rec["job_kind"] != "log_job" || rec["job_attempt"] == nil {
			t.Errorf("pass-through record without the job's attributes: %v", rec)
		}
	}
	if mail, _ := passed[2]["mail"].(map[string]any); mail["to"] != "ada" || passed[2]["step"] != "send" {
		t.Errorf("pass-through record lost attributes or groups: %v", passed[2])
	}
}

// TestJobLogOutcomes: logs are stored whatever the outcome (a panic, a
// snooze, a cancel), not at all when nothing was logged, and a line logged
// after Work returned (by a goroutine it left behind) is dropped.
func TestJobLogOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	release, late := make(chan struct{}), make(chan struct{})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[logArgs]) error {
		log := JobLogger(ctx)
		switch job.Args.Mode {
		case "quiet":
			return nil
		case "panic":
			log.Info("about to panic")
			panic("boom")
		case "snooze":
			log.Info("snoozing", "attempt", job.Attempt)
			if !millracetype.MetadataHasKey(job.Metadata, "snoozes") {
				return JobSnooze(time.Millisecond)
			}
			return nil
		case "cancel":
			log.Info("cancelling")
			return JobCancel(errors.New("no point"))
		case "late":
			log.Info("before return")
			go func() {
				<-release
				log.Info("after return")
				close(late)
			}()
			return nil
		}
		return fmt.Errorf("unknown mode %q", job.Args.Mode)
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(5), Workers: workers,
		WorkerMiddleware: []WorkerMiddleware{mustJobLogMiddleware(t, &JobLogConfig{NewHandler: noTime})}})
	start(t, c)
	insert := func(mode string) int64 {
		t.Helper()
		res, err := c.Insert(ctx, logArgs{Mode: mode}, &InsertOpts{MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		return res.Job.ID
	}
	quiet, panicking, snooze, cancel, lateID := insert("quiet"), insert("panic"), insert("snooze"), insert("cancel"), insert("late")

	if job := waitState(t, db, quiet, millracetype.JobStateCompleted); millracetype.MetadataHasKey(job.Metadata, JobLogMetadataKey) {
		t.Errorf("a job that logged nothing got logs: %s", job.Metadata)
	}
	job := waitState(t, db, panicking, millracetype.JobStateDiscarded)
	if got := storedLogs(t, job); !slices.Equal(got, []JobLogEntry{{1, "level=INFO msg=\"about to panic\"\n"}}) {
		t.Errorf("panicked job's logs %+v", got)
	}
	if len(job.Errors) != 1 || job.Errors[0].Error != "boom" {
		t.Errorf("panicked job's errors %+v", job.Errors)
	}
	// A snooze gives the attempt back: both runs are attempt 1.
	job = waitState(t, db, snooze, millracetype.JobStateCompleted)
	if got := storedLogs(t, job); !slices.Equal(got, []JobLogEntry{{1, "level=INFO msg=snoozing attempt=1\n"},
		{1, "level=INFO msg=snoozing attempt=1\n"}}) {
		t.Errorf("snoozed job's logs %+v", got)
	}
	job = waitState(t, db, cancel, millracetype.JobStateCancelled)
	if got := storedLogs(t, job); !slices.Equal(got, []JobLogEntry{{1, "level=INFO msg=cancelling\n"}}) {
		t.Errorf("cancelled job's logs %+v", got)
	}
	job = waitState(t, db, lateID, millracetype.JobStateCompleted)
	close(release)
	<-late
	if got := storedLogs(t, db.Job(t, lateID)); !slices.Equal(got, []JobLogEntry{{1, "level=INFO msg=\"before return\"\n"}}) {
		t.Errorf("late job's logs %+v (row was %s)", got, job.Metadata)
	}
}

// TestJobLogCaps: past MaxBytes an attempt keeps its first whole lines and
// a marker counting exactly the bytes dropped; a single line longer than
// the cap is cut on a character boundary; past MaxTotalBytes the oldest
// attempts go, the newest stays.
func TestJobLogCaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	clientLog := &logSink{}
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[logArgs]) error {
		log := JobLogger(ctx)
		switch job.Args.Mode {
		case "lines":
			for i := range job.Args.Lines {
				log.Info("line", "i", i)
			}
			return nil
		case "long":
			log.Info(strings.Repeat("é", 3000))
			return nil
		case "attempts":
			log.Info(strings.Repeat("x", 500), "attempt", job.Attempt)
			if job.Attempt < 3 {
				return errors.New("again")
			}
			return nil
		}
		return fmt.Errorf("unknown mode %q", job.Args.Mode)
	}))
	const maxBytes, maxTotal = 1024, 1300
	c := newClient(t, db, &Config{Queues: oneQueue(3), Workers: workers, RetryPolicy: soonRetry{}, Logger: clientLog.logger(),
		WorkerMiddleware: []WorkerMiddleware{mustJobLogMiddleware(t, &JobLogConfig{NewHandler: noTime,
			MaxBytes: maxBytes, MaxTotalBytes: maxTotal})}})
	start(t, c)
	lines, err := c.Insert(ctx, logArgs{Mode: "lines", Lines: 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	long, err := c.Insert(ctx, logArgs{Mode: "long"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	attempts, err := c.Insert(ctx, logArgs{Mode: "attempts"}, nil)
	if err != nil {
		t.Fatal(err)
	}

	logs := storedLogs(t, waitState(t, db, lines.Job.ID, millracetype.JobStateCompleted))
	if len(logs) != 1 || len(logs[0].Log) > maxBytes {
		t.Fatalf("truncated logs %+v", logs)
	}
	text, marker, ok := strings.Cut(logs[0].Log, "[millrace: log truncated")
	kept := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	total := 0
	for i := range 100 {
		line := fmt.Sprintf("level=INFO msg=line i=%d\n", i)
		total += len(line)
		if i < len(kept) && kept[i]+"\n" != line {
			t.Fatalf("kept line %d is %q, want %q", i, kept[i], line)
		}
	}
	wantMarker := fmt.Sprintf(": over %d bytes for this attempt; %d bytes dropped]\n", maxBytes, total-len(text))
	if !ok || marker != wantMarker || len(kept) < 30 || len(kept) >= 100 {
		t.Fatalf("truncated log: %d lines kept, marker %q (want %q)", len(kept), marker, wantMarker)
	}
	clientLog.waitFor(t, "job log over its per-attempt limit")

	logs = storedLogs(t, waitState(t, db, long.Job.ID, millracetype.JobStateCompleted))
	if len(logs) != 1 || len(logs[0].Log) > maxBytes || !utf8.ValidString(logs[0].Log) {
		t.Fatalf("long line log %+v", logs)
	}
	text, _, ok = strings.Cut(logs[0].Log, "\n[millrace: log truncated")
	if !ok || !strings.HasPrefix(text, "level=INFO msg=éé") || strings.Count(text, "é") < 400 {
		t.Fatalf("long line kept as %q", text)
	}

	// Each attempt's entry is about 550 bytes: three do not fit in 1300.
	logs = storedLogs(t, waitState(t, db, attempts.Job.ID, millracetype.JobStateCompleted))
	if len(logs) != 2 || logs[0].Attempt != 2 || logs[1].Attempt != 3 {
		t.Fatalf("total cap kept attempts %v", logs)
	}
	clientLog.waitFor(t, "dropped the oldest attempts' entries")
}

// TestJobLogBadMetadata: a job whose metadata holds something else under
// "river:log" is worked and completed, its metadata left as it was.
func TestJobLogBadMetadata(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	clientLog := &logSink{}
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[logArgs]) error {
		JobLogger(ctx).Info("hello")
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, Logger: clientLog.logger(),
		WorkerMiddleware: []WorkerMiddleware{mustJobLogMiddleware(t, nil)}})
	row := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "log_job", Args: []byte(`{}`), MaxAttempts: 5,
		State: millracetype.JobStateAvailable, Metadata: []byte(`{"river:log": "not an array"}`)})
	start(t, c)
	job := waitState(t, db, row.ID, millracetype.JobStateCompleted)
	if string(job.Metadata) != `{"river:log": "not an array"}` {
		t.Errorf("metadata changed to %s", job.Metadata)
	}
	clientLog.waitFor(t, "job log not stored")
	if _, err := JobLogs(job); !errors.Is(err, ErrMalformedJobLogs) {
		t.Errorf("JobLogs of a bad value: %v", err)
	}
}

// TestJobLogHandlerPanics: a pass-through handler that panics, or a
// NewHandler that starts failing, neither fails the job nor loses its log.
func TestJobLogHandlerPanics(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	var calls sync.Map
	mw := mustJobLogMiddleware(t, &JobLogConfig{
		NewHandler: func(w io.Writer) slog.Handler {
			// The check at construction gets io.Discard; from then on fail.
			if w != io.Discard {
				panic("handler factory broke")
			}
			return slog.NewTextHandler(w, nil)
		},
		PassThrough: panicHandler{&calls}})
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[logArgs]) error {
		JobLogger(ctx).With("a", 1).WithGroup("g").Info("still logged")
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, WorkerMiddleware: []WorkerMiddleware{mw}})
	start(t, c)
	res, err := c.Insert(context.Background(), logArgs{}, &InsertOpts{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	job := waitState(t, db, res.Job.ID, millracetype.JobStateCompleted)
	logs := storedLogs(t, job)
	if len(logs) != 1 || !strings.Contains(logs[0].Log, `msg="still logged" a=1`) {
		t.Errorf("logs %+v", logs)
	}
	for _, m := range []string{"WithAttrs", "WithGroup", "Handle"} {
		if _, ok := calls.Load(m); !ok {
			t.Errorf("pass-through %s never called", m)
		}
	}
}

// panicHandler panics in every method but Enabled.
type panicHandler struct{ calls *sync.Map }

func (panicHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h panicHandler) Handle(context.Context, slog.Record) error {
	h.calls.Store("Handle", true)
	panic("handle")
}
func (h panicHandler) WithAttrs([]slog.Attr) slog.Handler {
	h.calls.Store("WithAttrs", true)
	panic("with attrs")
}
func (h panicHandler) WithGroup(string) slog.Handler {
	h.calls.Store("WithGroup", true)
	panic("with group")
}

func TestNewJobLogMiddlewareValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  *JobLogConfig
		want string
	}{
		{"negative MaxBytes", &JobLogConfig{MaxBytes: -1}, "MaxBytes -1 out of range"},
		{"MaxBytes too small", &JobLogConfig{MaxBytes: 100}, "MaxBytes 100 out of range"},
		{"MaxBytes too large", &JobLogConfig{MaxBytes: MaxJobLogBytes + 1}, "out of range"},
		{"negative MaxTotalBytes", &JobLogConfig{MaxTotalBytes: -5}, "MaxTotalBytes -5 out of range"},
		{"MaxTotalBytes too large", &JobLogConfig{MaxTotalBytes: MaxJobLogBytes + 1}, "MaxTotalBytes"},
		{"nil handler", &JobLogConfig{NewHandler: func(io.Writer) slog.Handler { return nil }}, "nil handler"},
		{"panicking handler", &JobLogConfig{NewHandler: func(io.Writer) slog.Handler { panic("no") }}, "panicked: no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewJobLogMiddleware(tc.cfg)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) || m != nil {
				t.Errorf("got %v, %v; want an ErrInvalidConfig containing %q", m, err, tc.want)
			}
		})
	}
	for _, cfg := range []*JobLogConfig{nil, {}, {MaxBytes: MinJobLogBytes, MaxTotalBytes: 1}, {MaxBytes: MaxJobLogBytes, MaxTotalBytes: MaxJobLogBytes}} {
		m, err := NewJobLogMiddleware(cfg)
		if err != nil || m == nil {
			t.Errorf("NewJobLogMiddleware(%+v): %v", cfg, err)
		}
	}
	m, _ := NewJobLogMiddleware(nil)
	if m.maxBytes != DefaultJobLogMaxBytes || m.maxTotal != DefaultJobLogMaxTotalBytes {
		t.Errorf("defaults %d, %d", m.maxBytes, m.maxTotal)
	}
}

func TestJobLogsParse(t *testing.T) {
	t.Parallel()
	if _, err := JobLogs(nil); err == nil {
		t.Error("JobLogs(nil) gave no error")
	}
	for _, tc := range []struct {
		metadata string
		want     []JobLogEntry
		bad      bool
	}{
		{metadata: ``},
		{metadata: `{}`},
		{metadata: `{"river:log": null}`},
		{metadata: `{"river:log": []}`},
		{metadata: `{"river:log": [{"log": "a\n", "attempt": 1}, {"attempt": 2, "log": "b"}]}`,
			want: []JobLogEntry{{1, "a\n"}, {2, "b"}}},
		{metadata: `[]`, bad: true},
		{metadata: `null`, bad: true},
		{metadata: `"text"`, bad: true},
		{metadata: `{"river:log": 5}`, bad: true},
		{metadata: `{"river:log": {"attempt": 1}}`, bad: true},
		{metadata: `{"river:log": [{"attempt": "one", "log": "x"}]}`, bad: true},
		{metadata: `{"river:log": [{"attempt": 1, "log": 7}]}`, bad: true},
	} {
		got, err := JobLogs(&millracetype.JobRow{ID: 42, Metadata: []byte(tc.metadata)})
		switch {
		case tc.bad && (!errors.Is(err, ErrMalformedJobLogs) || !strings.Contains(err.Error(), "job 42")):
			t.Errorf("%s: got %v, %v; want ErrMalformedJobLogs", tc.metadata, got, err)
		case !tc.bad && (err != nil || !slices.Equal(got, tc.want)):
			t.Errorf("%s: got %v, %v; want %v", tc.metadata, got, err, tc.want)
		}
	}
}

// TestJobLogBuffer checks the cap's arithmetic directly.
func TestJobLogBuffer(t *testing.T) {
	t.Parallel()
	line := strings.Repeat("a", 99) + "\n"
	for _, tc := range []struct {
		name   string
		writes []string
		want   func(text string, dropped int) bool
	}{
		{"empty", nil, func(text string, d int) bool { return text == "" && d == 0 }},
		{"exactly full", []string{strings.Repeat(line, 10), strings.Repeat("b", 23) + "\n"},
			func(text string, d int) bool { return len(text) == 1024 && d == 0 }},
		{"one byte over", []string{strings.Repeat(line, 10), strings.Repeat("b", 24) + "\n"},
			func(text string, d int) bool {
				return len(text) <= 1024 && d == 125 && strings.HasPrefix(text, strings.Repeat(line, 9)+"[millrace: log truncated")
			}},
		{"no newline at all", []string{strings.Repeat("日本", 1000)},
			func(text string, d int) bool {
				body, _, _ := strings.Cut(text, "\n[millrace")
				return len(text) <= 1024 && utf8.ValidString(text) && len(body)+d == 6000 && len(body) > 800
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &jobLogBuffer{max: 1024}
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			text, dropped := b.close()
			if !tc.want(text, dropped) {
				t.Errorf("got %d bytes, %d dropped:\n%s", len(text), dropped, text)
			}
			if _, err := b.Write([]byte("late\n")); err != nil {
				t.Fatal(err)
			}
			if again, _ := b.close(); again != text {
				t.Error("a write after close changed the text")
			}
		})
	}
}

// TestJobLoggerFallback: without the middleware, JobLogger is the client's
// logger in a job and slog.Default() elsewhere.
func TestJobLoggerFallback(t *testing.T) {
	t.Parallel()
	if JobLogger(context.Background()) != slog.Default() {
		t.Error("JobLogger outside a job is not slog.Default()")
	}
	db := testfixture.New(t)
	clientLogger := slog.New(slog.DiscardHandler)
	got := make(chan *slog.Logger, 1)
	workers := NewWorkers()
	AddWorker(workers, WorkFunc(func(ctx context.Context, job *Job[logArgs]) error {
		got <- JobLogger(ctx)
		return nil
	}))
	c := newClient(t, db, &Config{Queues: oneQueue(1), Workers: workers, Logger: clientLogger})
	start(t, c)
	if _, err := c.Insert(context.Background(), logArgs{}, nil); err != nil {
		t.Fatal(err)
	}
	if l := recv(t, got, "job's logger"); l != clientLogger {
		t.Errorf("JobLogger in a job without the middleware is %p, want the client's %p", l, clientLogger)
	}
}
