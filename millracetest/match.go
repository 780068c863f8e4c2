package millracetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/millracetype"
)

// precision is the database's precision for timestamps: a ScheduledAt
// given with nanoseconds is stored rounded to it.
const precision = time.Microsecond

// expectation is one expected job, checked and ready to compare with rows.
type expectation struct {
	kind string
	opts RequireInsertedOpts
	// tags are opts.Tags sorted (nil when not checked).
	tags []string
	// uniqueStates is the mask of opts.UniqueStates (0 when not checked).
	uniqueStates byte
	// metadata is opts.Metadata decoded (nil when not checked).
	metadata any
	// argsJSON is the expected args encoded, and args them decoded (only
	// with MatchArgs).
	argsJSON []byte
	args     any
}

// isNil reports whether v is nil or a nil pointer, map, slice, func,
// channel or interface inside an interface.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// kindOf calls Kind on args, turning a panic into an error.
func kindOf(args client.JobArgs) (kind string, err error) {
	if isNil(args) {
		return "", errors.New("expected args are nil")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Kind() of %T panicked: %v", args, r)
		}
	}()
	kind = args.Kind()
	if kind == "" {
		return "", fmt.Errorf("Kind() of %T returned an empty string", args)
	}
	return kind, nil
}

// newExpectation checks args and opts (nil opts check nothing) and
// prepares them for comparison.
func newExpectation(args client.JobArgs, opts *RequireInsertedOpts) (*expectation, error) {
	kind, err := kindOf(args)
	if err != nil {
		return nil, err
	}
	e := &expectation{kind: kind}
	if opts != nil {
		e.opts = *opts
	}
	o := &e.opts
	if o.Priority != 0 && (o.Priority < 1 || o.Priority > 4) {
		return nil, fmt.Errorf("opts.Priority %d is out of range 1..4", o.Priority)
	}
	if o.MaxAttempts < 0 {
		return nil, fmt.Errorf("opts.MaxAttempts %d is negative", o.MaxAttempts)
	}
	if o.State != "" && !o.State.Valid() {
		return nil, fmt.Errorf("opts.State %q is not a job state", o.State)
	}
	if o.ScheduledAtWithin < 0 {
		return nil, fmt.Errorf("opts.ScheduledAtWithin %s is negative", o.ScheduledAtWithin)
	}
	if o.ScheduledAtWithin != 0 && o.ScheduledAt.IsZero() {
		return nil, errors.New("opts.ScheduledAtWithin is set without ScheduledAt")
	}
	if !o.ScheduledFrom.IsZero() && !o.ScheduledTo.IsZero() && o.ScheduledTo.Before(o.ScheduledFrom) {
		return nil, fmt.Errorf("opts.ScheduledTo %s is before ScheduledFrom %s", fmtTime(o.ScheduledTo), fmtTime(o.ScheduledFrom))
	}
	if o.Tags != nil {
		// Not nil even when empty: an empty, non-nil Tags is checked.
		e.tags = append([]string{}, o.Tags...)
		slices.Sort(e.tags)
	}
	if o.UniqueStates != nil {
		for _, s := range o.UniqueStates {
			if !s.Valid() {
				return nil, fmt.Errorf("opts.UniqueStates: %q is not a job state", s)
			}
		}
		if len(o.UniqueStates) == 0 {
			return nil, errors.New("opts.UniqueStates is empty but not nil (a unique job has at least one unique state)")
		}
		e.uniqueStates = millracetype.UniqueStatesMask(o.UniqueStates...)
	}
	if o.Metadata != nil {
		v, err := decodeJSON(o.Metadata)
		if err != nil {
			return nil, fmt.Errorf("opts.Metadata is not valid JSON: %w", err)
		}
		if _, ok := v.(map[string]any); !ok {
			return nil, fmt.Errorf("opts.Metadata must be a JSON object, not %s", o.Metadata)
		}
		e.metadata = v
	}
	if o.MatchArgs {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("opts.MatchArgs: encode the expected args %T: %w", args, err)
		}
		if e.args, err = decodeJSON(b); err != nil {
			return nil, fmt.Errorf("opts.MatchArgs: the expected args %T encode to invalid JSON: %w", args, err)
		}
		e.argsJSON = b
	}
	return e, nil
}

// fieldDiff is one field in which a job differs from what was expected.
type fieldDiff struct {
	field, want, got string
}

// diff lists the fields in which row differs from e, kind first.
func (e *expectation) diff(row *millracetype.JobRow) []fieldDiff {
	var out []fieldDiff
	add := func(field, want, got string) { out = append(out, fieldDiff{field, want, got}) }
	o := &e.opts
	if row.Kind != e.kind {
		add("kind", fmt.Sprintf("%q", e.kind), fmt.Sprintf("%q", row.Kind))
	}
	if o.Queue != "" && row.Queue != o.Queue {
		add("queue", fmt.Sprintf("%q", o.Queue), fmt.Sprintf("%q", row.Queue))
	}
	if o.Priority != 0 && row.Priority != o.Priority {
		add("priority", fmt.Sprint(o.Priority), fmt.Sprint(row.Priority))
	}
	if o.MaxAttempts != 0 && row.MaxAttempts != o.MaxAttempts {
		add("max_attempts", fmt.Sprint(o.MaxAttempts), fmt.Sprint(row.MaxAttempts))
	}
	if o.State != "" && row.State != o.State {
		add("state", string(o.State), string(row.State))
	}
	if !o.ScheduledAt.IsZero() {
		tol := max(o.ScheduledAtWithin, precision)
		if off := row.ScheduledAt.Sub(o.ScheduledAt); off > tol || off < -tol {
			add("scheduled_at", fmt.Sprintf("%s ± %s", fmtTime(o.ScheduledAt), tol),
				fmt.Sprintf("%s (off by %s)", fmtTime(row.ScheduledAt), off))
		}
	}
	if (!o.ScheduledFrom.IsZero() && row.ScheduledAt.Before(o.ScheduledFrom)) ||
		(!o.ScheduledTo.IsZero() && row.ScheduledAt.After(o.ScheduledTo)) {
		from, to := "…", "…"
		if !o.ScheduledFrom.IsZero() {
			from = fmtTime(o.ScheduledFrom)
		}
		if !o.ScheduledTo.IsZero() {
			to = fmtTime(o.ScheduledTo)
		}
		add("scheduled_at", fmt.Sprintf("in [%s, %s]", from, to), fmtTime(row.ScheduledAt))
	}
	if e.tags != nil {
		got := slices.Sorted(slices.Values(row.Tags))
		if !slices.Equal(got, e.tags) {
			add("tags", fmtTags(e.tags), fmtTags(row.Tags))
		}
	}
	if e.metadata != nil {
		got, err := decodeJSON(row.Metadata)
		switch {
		case err != nil:
			add("metadata", "containing "+compact(o.Metadata), fmt.Sprintf("undecodable %q (%v)", row.Metadata, err))
		case !jsonContains(got, e.metadata):
			add("metadata", "containing "+compact(o.Metadata), compact(row.Metadata))
		}
	}
	if (o.Unique || e.uniqueStates != 0) && row.UniqueKey == nil {
		add("unique", "a unique key", "none")
	} else if e.uniqueStates != 0 && row.UniqueStates != e.uniqueStates {
		add("unique_states", fmtStates(millracetype.UniqueStatesFromMask(e.uniqueStates)),
			fmtStates(millracetype.UniqueStatesFromMask(row.UniqueStates)))
	}
	if e.argsJSON != nil {
		got, err := decodeJSON(row.Args)
		switch {
		case err != nil:
			add("args", compact(e.argsJSON), fmt.Sprintf("undecodable %q (%v)", row.Args, err))
		case !jsonEqual(got, e.args):
			add("args", compact(e.argsJSON), compact(row.Args))
		}
	}
	return out
}

// fmtTime formats a time for messages.
func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// fmtTags formats tags for messages: ["a" "b"], or [] for none.
func fmtTags(tags []string) string {
	q := make([]string, len(tags))
	for i, t := range tags {
		q[i] = fmt.Sprintf("%q", t)
	}
	return "[" + strings.Join(q, " ") + "]"
}

// fmtStates formats job states for messages.
func fmtStates(states []millracetype.JobState) string {
	s := make([]string, len(states))
	for i, st := range states {
		s[i] = string(st)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// compact returns JSON without insignificant spaces, cut to a readable
// length; invalid JSON is returned quoted.
func compact(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return fmt.Sprintf("%q", b)
	}
	const maxLen = 300
	if s := buf.String(); len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut] + "…"
	}
	return buf.String()
}
