// Package uniquekey computes the unique_key and unique_states values of
// unique jobs exactly as River v0.51.2 does, so that millrace and River
// clients sharing one database detect the same duplicates.
//
// A unique key is the SHA-256 of a pre-image built from the parts the caller
// chose, always in this order:
//
//	&kind=<kind>      unless ExcludeKind
//	&args=<args>      with ByArgs: canonical args, see below
//	&period=<time>    with ByPeriod: the period's start, UTC RFC 3339
//	&queue=<queue>    with ByQueue
//
// With only ByState set the pre-image is just "&kind=<kind>".
//
// Canonical args depend on the Go type of the args. Without fields tagged
// `river:"unique"` they are the top-level members of the encoded args
// sorted bytewise by key, the first of duplicate keys kept, each value
// copied byte for byte, written compactly ({"k":v,"k2":v2}); empty args and
// [] give {}. With tagged fields they are those fields only, by JSON name,
// nested the way they nest in the encoding and ordered by their dotted
// paths; fields absent from the encoded args are skipped, and when all are
// absent nothing follows "&args=". Values are always the bytes of the
// encoded args, never re-encoded, so keys match River's only when args are
// encoded byte-identically (encoding/json.Marshal, compact, HTML escaping
// on).
//
// The package does no I/O; it is pure computation on values.
package uniquekey

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/millrace/millrace/millracetype"
)

// Sentinel errors returned (wrapped) by Opts.Validate, Key and PreImage.
// Test for them with errors.Is.
var (
	// ErrPeriodTooShort: ByPeriod is set but shorter than one second
	// (negative periods included).
	ErrPeriodTooShort = errors.New("unique ByPeriod must not be less than 1 second")
	// ErrExcludeKindAlone: ExcludeKind is set without ByArgs, ByPeriod or
	// ByQueue, which would make every job of every kind one duplicate.
	ErrExcludeKindAlone = errors.New("unique ExcludeKind requires ByArgs, ByPeriod or ByQueue")
	// ErrUnknownState: ByState holds a value that is not a job state.
	ErrUnknownState = errors.New("unique ByState contains an unknown job state")
	// ErrMissingRequiredState: a custom ByState leaves out one of the states
	// every unique job must be unique in (see RequiredStates).
	ErrMissingRequiredState = errors.New("unique ByState must include available, pending, running and scheduled")
)

// MinPeriod is the shortest ByPeriod accepted.
const MinPeriod = time.Second

// DefaultStatesMask is the unique_states mask of DefaultStates, used when
// ByState is empty: every state but cancelled and discarded (bit(8)
// '11110101').
const DefaultStatesMask byte = 0xF5

// DefaultStates returns the states a unique job is unique in when ByState
// is empty: every state but cancelled and discarded.
func DefaultStates() []millracetype.JobState {
	return []millracetype.JobState{
		millracetype.JobStateAvailable,
		millracetype.JobStateCompleted,
		millracetype.JobStatePending,
		millracetype.JobStateRetryable,
		millracetype.JobStateRunning,
		millracetype.JobStateScheduled,
	}
}

// RequiredStates returns the states that a custom ByState must include.
// Leaving one out would let a job be moved into a state in which it
// duplicates another with no caller to report the conflict to.
func RequiredStates() []millracetype.JobState {
	return []millracetype.JobState{
		millracetype.JobStateAvailable,
		millracetype.JobStatePending,
		millracetype.JobStateRunning,
		millracetype.JobStateScheduled,
	}
}

// Opts mirrors the user's unique options. The zero value means "not
// unique".
type Opts struct {
	// ByArgs makes the canonical args part of the key.
	ByArgs bool
	// ByPeriod, when non-zero, makes the start of the period holding the
	// job's scheduled time part of the key. It must be at least MinPeriod.
	ByPeriod time.Duration
	// ByQueue makes the job's queue part of the key.
	ByQueue bool
	// ByState lists the states in which the key must be unique. Empty means
	// DefaultStates. A non-nil empty slice still counts as an option being
	// set (as in River), so it makes the job unique by kind alone.
	ByState []millracetype.JobState
	// ExcludeKind leaves the kind out of the key, so jobs of different
	// kinds can be duplicates of one another. It needs ByArgs, ByPeriod or
	// ByQueue.
	ExcludeKind bool
}

// IsEmpty reports whether no unique option is set, in which case a job has
// no unique key and NULL unique_key/unique_states. ByState counts as set
// when it is non-nil, even if empty, and ExcludeKind counts on its own (and
// then fails Validate), both as in River. A nil *Opts is empty.
func (o *Opts) IsEmpty() bool {
	return o == nil ||
		(!o.ByArgs && o.ByPeriod == 0 && !o.ByQueue && o.ByState == nil && !o.ExcludeKind)
}

// Validate checks the options the way River checks them, in the same order,
// and returns the first problem wrapped around one of the sentinel errors
// (ErrPeriodTooShort, ErrExcludeKindAlone, ErrUnknownState,
// ErrMissingRequiredState). Empty options are valid.
func (o *Opts) Validate() error {
	if o.IsEmpty() {
		return nil
	}
	if o.ByPeriod != 0 && o.ByPeriod < MinPeriod {
		return fmt.Errorf("%w: got %s", ErrPeriodTooShort, o.ByPeriod)
	}
	if o.ExcludeKind && !o.ByArgs && o.ByPeriod == 0 && !o.ByQueue {
		return ErrExcludeKindAlone
	}
	for _, s := range o.ByState {
		if !s.Valid() {
			return fmt.Errorf("%w: %q", ErrUnknownState, s)
		}
	}
	if len(o.ByState) == 0 {
		return nil
	}
	var missing []string
	for _, s := range RequiredStates() {
		if !slices.Contains(o.ByState, s) {
			missing = append(missing, string(s))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrMissingRequiredState, strings.Join(missing, ", "))
	}
	return nil
}

// StatesMask returns the unique_states mask (see
// millracetype.UniqueStatesMask) of ByState, or DefaultStatesMask when
// ByState is empty. Unknown states add no bit; Validate rejects them.
func (o *Opts) StatesMask() byte {
	if o == nil || len(o.ByState) == 0 {
		return DefaultStatesMask
	}
	return millracetype.UniqueStatesMask(o.ByState...)
}

// Key computes the 32-byte SHA-256 unique key of a job, or returns nil and
// no error when o is empty (the job is not unique).
//
//   - kind is the job kind.
//   - encodedArgs are the args as encoding/json.Marshal encoded them
//     (compact, HTML escaping on); they are read only with ByArgs, and must
//     then be valid JSON (ErrInvalidJSON otherwise).
//   - args is the Go value that was encoded, or a pointer to it; its type
//     decides which fields are tagged `river:"unique"`. It may be nil when
//     only the raw JSON is known, which counts as "no tagged fields", as
//     does a value that is not a struct.
//   - queue is the job's effective queue.
//   - scheduledAt is the job's ScheduledAt if one was given, else nil;
//     now is the client's clock. The period is computed from scheduledAt
//     when given, else from now.
//
// Invalid options are reported as Validate reports them.
func Key(o *Opts, kind string, encodedArgs []byte, args any, queue string, scheduledAt *time.Time, now time.Time) ([]byte, error) {
	if o.IsEmpty() {
		return nil, nil
	}
	pre, err := PreImage(o, kind, encodedArgs, args, queue, scheduledAt, now)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(pre))
	return sum[:], nil
}

// PreImage returns the string whose SHA-256 is the unique key (see Key for
// the parameters), or "" when o is empty. It is exported for tests and
// debugging.
func PreImage(o *Opts, kind string, encodedArgs []byte, args any, queue string, scheduledAt *time.Time, now time.Time) (string, error) {
	if o.IsEmpty() {
		return "", nil
	}
	if err := o.Validate(); err != nil {
		return "", err
	}

	var b strings.Builder
	if !o.ExcludeKind {
		b.WriteString("&kind=")
		b.WriteString(kind)
	}
	if o.ByArgs {
		canon, err := canonicalArgs(encodedArgs, args)
		if err != nil {
			return "", fmt.Errorf("unique args: %w", err)
		}
		b.WriteString("&args=")
		b.WriteString(canon)
	}
	if o.ByPeriod != 0 {
		b.WriteString("&period=")
		b.WriteString(PeriodStart(o.ByPeriod, scheduledAt, now).Format(time.RFC3339))
	}
	if o.ByQueue {
		b.WriteString("&queue=")
		b.WriteString(queue)
	}
	return b.String(), nil
}

// PeriodStart returns the start, in UTC, of the unique period of length
// period that holds *scheduledAt, or now when scheduledAt is nil.
// Periods are aligned the way time.Time.Truncate aligns them: on multiples of
// period since the zero time (January 1, year 1, UTC), not the Unix epoch,
// so for example 7-day periods start on Mondays. The result does not depend
// on the location of the input.
func PeriodStart(period time.Duration, scheduledAt *time.Time, now time.Time) time.Time {
	t := now
	if scheduledAt != nil {
		t = *scheduledAt
	}
	return t.Truncate(period).UTC()
}
