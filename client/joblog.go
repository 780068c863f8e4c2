package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"unicode/utf8"

	"github.com/millrace/millrace/millracetype"
)

// Job logs
//
// JobLogMiddleware gives each job a *slog.Logger (see JobLogger) whose
// lines are kept with the job: at the end of every attempt the text logged
// during it is appended, as {"attempt": N, "log": "..."}, to the array
// stored under the metadata key "river:log". That is the key and the shape
// River's riverlog middleware uses, so River UI shows millrace's job logs,
// and a job worked by River and millrace in turn keeps the logs of both.

// JobLogMetadataKey is the metadata key holding a job's logs: a JSON array
// of JobLogEntry, oldest attempt first (River's key).
const JobLogMetadataKey = "river:log"

// Limits of JobLogConfig.
const (
	// DefaultJobLogMaxBytes is the default per-attempt cap (2 MiB, River's).
	DefaultJobLogMaxBytes = 2 << 20
	// DefaultJobLogMaxTotalBytes is the default cap of all attempts' logs
	// together (8 MiB, River's).
	DefaultJobLogMaxTotalBytes = 8 << 20
	// MinJobLogBytes is the smallest per-attempt cap: room for some lines
	// and the truncation marker.
	MinJobLogBytes = 1024
	// MaxJobLogBytes is the largest value of either cap (64 MiB): the logs
	// live in a jsonb column, which must stay far below Postgres's 255 MB.
	MaxJobLogBytes = 64 << 20
)

// ErrMalformedJobLogs is returned (wrapped) by JobLogs when a job's
// metadata holds something under "river:log" that is not a list of log
// entries, or is not a JSON object at all.
var ErrMalformedJobLogs = errors.New("malformed job logs in metadata")

// JobLogEntry is the log of one attempt of a job, as stored in its
// metadata.
type JobLogEntry struct {
	// Attempt is the job's attempt number when the lines were logged. A
	// snoozed attempt, or one interrupted by StopAndCancel, gives its
	// attempt number back, so two entries may share a number.
	Attempt int `json:"attempt"`
	// Log is the text the attempt logged, possibly ending with a
	// truncation marker (a line starting "[millrace: log truncated").
	Log string `json:"log"`
}

// JobLogConfig configures JobLogMiddleware. The zero value is a working
// configuration.
type JobLogConfig struct {
	// MaxBytes caps the text kept of one attempt, MinJobLogBytes to
	// MaxJobLogBytes. Past it, whole lines are dropped (the start of a single
	// longer line is kept, cut on a character boundary) and the text ends
	// with a marker line saying how many bytes were dropped; the marker
	// counts towards the cap. The cap is on the text: its JSON encoding may
	// be longer (escapes). Default DefaultJobLogMaxBytes (2 MiB).
	MaxBytes int

	// MaxTotalBytes caps the encoded array of all attempts' entries, up to
	// MaxJobLogBytes. When a new entry would pass it, the oldest entries are
	// dropped; the newest is always kept, even when it alone is larger.
	// Default DefaultJobLogMaxTotalBytes (8 MiB).
	MaxTotalBytes int

	// NewHandler makes the handler that formats an attempt's records into w
	// (called once per attempt). It chooses the format and the level.
	// Default: slog.NewTextHandler(w, nil), which keeps Info and above.
	NewHandler func(w io.Writer) slog.Handler

	// PassThrough, when set, also receives every record the job logs (for
	// its own level), with the attributes job_id, job_kind and job_attempt
	// added, e.g. the application's own log handler. Default: none.
	PassThrough slog.Handler
}

// JobLogMiddleware is a WorkerMiddleware that captures what each job logs
// through JobLogger and stores it with the job, per attempt, under
// JobLogMetadataKey. Put it in Config.WorkerMiddleware; make it with
// NewJobLogMiddleware. Read the stored logs with JobLogs, or with
// `millrace jobs logs ID`.
//
// The entry is written with the attempt's outcome, whatever it is
// (completed, failed, panicked, snoozed, cancelled), and only when the
// attempt logged something. Earlier attempts' entries, including River's,
// are kept (see JobLogConfig.MaxTotalBytes). Lines logged after Work has
// returned, by goroutines it left running, are dropped. A job whose
// metadata is not a JSON object, or holds something other than an array
// under the key, keeps its metadata as it is: the attempt's log is not
// stored and the client logs a warning.
type JobLogMiddleware struct {
	maxBytes   int
	maxTotal   int
	newHandler func(w io.Writer) slog.Handler
	pass       slog.Handler
}

// NewJobLogMiddleware returns a JobLogMiddleware; cfg may be nil. A cap out
// of range, or a NewHandler that panics or returns nil, gives an error
// wrapping ErrInvalidConfig.
func NewJobLogMiddleware(cfg *JobLogConfig) (*JobLogMiddleware, error) {
	if cfg == nil {
		cfg = &JobLogConfig{}
	}
	bad := func(format string, args ...any) (*JobLogMiddleware, error) {
		return nil, fmt.Errorf("%w: job log middleware: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	m := &JobLogMiddleware{maxBytes: cfg.MaxBytes, maxTotal: cfg.MaxTotalBytes, newHandler: cfg.NewHandler, pass: cfg.PassThrough}
	if m.maxBytes == 0 {
		m.maxBytes = DefaultJobLogMaxBytes
	}
	if m.maxBytes < MinJobLogBytes || m.maxBytes > MaxJobLogBytes {
		return bad("MaxBytes %d out of range %d..%d (0 for the default)", cfg.MaxBytes, MinJobLogBytes, MaxJobLogBytes)
	}
	if m.maxTotal == 0 {
		m.maxTotal = DefaultJobLogMaxTotalBytes
	}
	if m.maxTotal < 0 || m.maxTotal > MaxJobLogBytes {
		return bad("MaxTotalBytes %d out of range 1..%d (0 for the default)", cfg.MaxTotalBytes, MaxJobLogBytes)
	}
	if m.newHandler == nil {
		m.newHandler = defaultJobLogHandler
	} else if _, err := m.makeHandler(io.Discard); err != nil {
		return bad("NewHandler: %v", err)
	}
	return m, nil
}

func defaultJobLogHandler(w io.Writer) slog.Handler { return slog.NewTextHandler(w, nil) }

// makeHandler calls NewHandler, turning a panic or a nil handler into an
// error.
func (m *JobLogMiddleware) makeHandler(w io.Writer) (h slog.Handler, err error) {
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("panicked: %v", r)
		}
	}()
	if h = m.newHandler(w); h == nil {
		return nil, errors.New("returned a nil handler")
	}
	return h, nil
}

type jobLoggerKey struct{}

// Work implements WorkerMiddleware: it puts the job's logger in ctx, runs
// next, and records what was logged with the attempt's outcome.
func (m *JobLogMiddleware) Work(ctx context.Context, job *millracetype.JobRow, next func(ctx context.Context) error) error {
	if job == nil {
		return next(ctx)
	}
	buf := &jobLogBuffer{max: m.maxBytes}
	capture, err := m.makeHandler(buf)
	if err != nil {
		logFor(ctx).Warn("millrace: job log NewHandler failed; using a text handler for this attempt",
			"job_id", job.ID, "error", err)
		capture = defaultJobLogHandler(buf)
	}
	h := &jobLogHandler{capture: capture}
	if m.pass != nil {
		h.pass = safeWithAttrs(m.pass, []slog.Attr{slog.Int64("job_id", job.ID), slog.String("job_kind", job.Kind),
			slog.Int("job_attempt", job.Attempt)})
	}
	defer m.store(ctx, job, buf)
	return next(context.WithValue(ctx, jobLoggerKey{}, slog.New(h)))
}

// store appends the attempt's entry to the job's metadata updates.
func (m *JobLogMiddleware) store(ctx context.Context, job *millracetype.JobRow, buf *jobLogBuffer) {
	text, dropped := buf.close()
	if text == "" {
		return
	}
	logger := logFor(ctx)
	if dropped > 0 {
		logger.Warn("millrace: job log over its per-attempt limit; truncated",
			"job_id", job.ID, "attempt", job.Attempt, "max_bytes", m.maxBytes, "dropped_bytes", dropped)
	}
	entry, err := json.Marshal(JobLogEntry{Attempt: job.Attempt, Log: text})
	if err != nil { // cannot happen for an int and a string; never lose the job over it
		logger.Error("millrace: job log not stored", "job_id", job.ID, "error", err)
		return
	}
	logs, droppedEntries, err := appendJobLog(job.Metadata, entry, m.maxTotal)
	if err != nil {
		logger.Warn("millrace: job log not stored; the job's metadata is left as it is",
			"job_id", job.ID, "attempt", job.Attempt, "error", err)
		return
	}
	if droppedEntries > 0 {
		logger.Warn("millrace: job logs over their total limit; dropped the oldest attempts' entries",
			"job_id", job.ID, "max_total_bytes", m.maxTotal, "dropped_entries", droppedEntries)
	}
	if !jobStateSetUpdate(ctx, JobLogMetadataKey, logs) {
		logger.Warn("millrace: job log not stored: JobLogMiddleware ran outside a client's job", "job_id", job.ID)
	}
}

// appendJobLog returns the job's log array (from its metadata as fetched)
// with entry appended, dropping the oldest entries while the array is over
// maxTotal (always keeping the new one), and how many it dropped.
func appendJobLog(metadata []byte, entry []byte, maxTotal int) ([]byte, int, error) {
	var entries []json.RawMessage
	if len(bytes.TrimSpace(metadata)) > 0 {
		var md map[string]json.RawMessage
		if err := json.Unmarshal(metadata, &md); err != nil || md == nil {
			return nil, 0, errors.New("the job's metadata is not a JSON object")
		}
		if raw, ok := md[JobLogMetadataKey]; ok {
			if err := json.Unmarshal(raw, &entries); err != nil {
				return nil, 0, fmt.Errorf("metadata %q holds something other than an array", JobLogMetadataKey)
			}
		}
	}
	entries = append(entries, entry)
	// The compact encoding: brackets, entries, commas between them.
	size := 1
	for _, e := range entries {
		size += len(e) + 1
	}
	dropped := 0
	for size > maxTotal && dropped < len(entries)-1 {
		size -= len(entries[dropped]) + 1
		dropped++
	}
	b, err := json.Marshal(entries[dropped:])
	if err != nil {
		return nil, 0, fmt.Errorf("encode logs: %w", err)
	}
	return b, dropped, nil
}

// JobLogger returns the logger of the job whose context ctx is. With
// JobLogMiddleware installed, its lines are stored with the job (see
// JobLogMiddleware). Without it, JobLogger returns the running client's
// Config.Logger, or, outside a job, slog.Default(). It never returns nil.
func JobLogger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(jobLoggerKey{}).(*slog.Logger); ok {
		return l
	}
	return logFor(ctx)
}

// logFor returns the client's logger of a job's context, or slog.Default().
func logFor(ctx context.Context) *slog.Logger {
	if l := jobClientLogger(ctx); l != nil {
		return l
	}
	return slog.Default()
}

// JobLogs returns the logs stored with a job by JobLogMiddleware (or by
// River's riverlog), one entry per attempt that logged something, oldest
// first; none when the job has no logs. Get the row with JobGet or
// JobList. Metadata that is not a JSON object, or a value under
// JobLogMetadataKey that is not a list of entries, gives an error wrapping
// ErrMalformedJobLogs.
func JobLogs(job *millracetype.JobRow) ([]JobLogEntry, error) {
	if job == nil {
		return nil, errors.New("job logs: job is nil")
	}
	if len(bytes.TrimSpace(job.Metadata)) == 0 {
		return nil, nil
	}
	var md map[string]json.RawMessage
	if err := json.Unmarshal(job.Metadata, &md); err != nil || md == nil {
		return nil, fmt.Errorf("job logs of job %d: %w: the metadata is not a JSON object", job.ID, ErrMalformedJobLogs)
	}
	raw, ok := md[JobLogMetadataKey]
	if !ok {
		return nil, nil
	}
	var entries []JobLogEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("job logs of job %d: %w: %q: %w", job.ID, ErrMalformedJobLogs, JobLogMetadataKey, err)
	}
	return entries, nil
}

// jobLogBuffer collects one attempt's formatted lines, at most max bytes.
// It is written by the job's goroutines and closed when the attempt ends;
// writes after that are dropped.
type jobLogBuffer struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int
	closed  bool
}

// Write keeps what fits under the cap and counts the rest; it never fails,
// so a full log never fails a job.
func (b *jobLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
	case b.dropped > 0:
		b.dropped += len(p)
	case len(b.buf)+len(p) <= b.max:
		b.buf = append(b.buf, p...)
	default:
		room := b.max - len(b.buf)
		b.buf = append(b.buf, p[:room]...)
		b.dropped += len(p) - room
	}
	return len(p), nil
}

// close ends the capture and returns the text and how many bytes were
// dropped. A truncated text is cut back to its last whole line (or, when
// the first line alone is too long, to a character boundary) to leave room
// for the marker line within the cap.
func (b *jobLogBuffer) close() (string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.dropped == 0 {
		return string(b.buf), 0
	}
	total := len(b.buf) + b.dropped
	// The marker's length with the largest count it could show, plus a
	// newline that may be needed before it.
	keep := min(b.max-len(jobLogMarker(b.max, total))-1, len(b.buf))
	cut := keep
	if i := bytes.LastIndexByte(b.buf[:keep], '\n'); i >= 0 {
		cut = i + 1
	} else {
		for cut > 0 && !utf8.RuneStart(b.buf[cut]) {
			cut--
		}
	}
	text := b.buf[:cut]
	dropped := total - cut
	var out []byte
	out = append(out, text...)
	if len(text) > 0 && text[len(text)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, jobLogMarker(b.max, dropped)...)
	return string(out), dropped
}

func jobLogMarker(maxBytes, dropped int) string {
	return fmt.Sprintf("[millrace: log truncated: over %d bytes for this attempt; %d bytes dropped]\n", maxBytes, dropped)
}

// jobLogHandler sends a job's records to the capturing handler and, when
// set, to the pass-through one. A panic in either (both may be the
// user's) becomes Handle's error: logging never crashes a job.
type jobLogHandler struct {
	capture slog.Handler
	pass    slog.Handler
}

func (h *jobLogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return safeEnabled(h.capture, ctx, level) || (h.pass != nil && safeEnabled(h.pass, ctx, level))
}

func (h *jobLogHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	if safeEnabled(h.capture, ctx, r.Level) {
		errs = append(errs, safeHandle(h.capture, ctx, r.Clone()))
	}
	if h.pass != nil && safeEnabled(h.pass, ctx, r.Level) {
		errs = append(errs, safeHandle(h.pass, ctx, r.Clone()))
	}
	return errors.Join(errs...)
}

func (h *jobLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	n := &jobLogHandler{capture: safeWithAttrs(h.capture, attrs)}
	if h.pass != nil {
		n.pass = safeWithAttrs(h.pass, attrs)
	}
	return n
}

func (h *jobLogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := &jobLogHandler{capture: safeWithGroup(h.capture, name)}
	if h.pass != nil {
		n.pass = safeWithGroup(h.pass, name)
	}
	return n
}

func safeEnabled(h slog.Handler, ctx context.Context, level slog.Level) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return h.Enabled(ctx, level)
}

func safeHandle(h slog.Handler, ctx context.Context, r slog.Record) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("log handler %T panicked: %v", h, p)
		}
	}()
	return h.Handle(ctx, r)
}

// safeWithAttrs and safeWithGroup keep the handler as it was when the
// call panics or returns nil.
func safeWithAttrs(h slog.Handler, attrs []slog.Attr) (out slog.Handler) {
	defer func() {
		if recover() != nil || out == nil {
			out = h
		}
	}()
	return h.WithAttrs(attrs)
}

func safeWithGroup(h slog.Handler, name string) (out slog.Handler) {
	defer func() {
		if recover() != nil || out == nil {
			out = h
		}
	}()
	return h.WithGroup(name)
}
