package pgexec

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/millracetype"
)

// jobColumnNames are the columns a job query returns, in scan order.
var jobColumnNames = []string{
	"id", "args", "attempt", "attempted_at", "attempted_by", "created_at", "errors", "finalized_at",
	"kind", "max_attempts", "metadata", "priority", "queue", "scheduled_at", "state", "tags",
	"unique_key", "unique_states",
}

// jobColumns renders the column list with an optional table alias.
func jobColumns(alias string) string {
	prefix := ""
	if alias != "" {
		prefix = alias + "."
	}
	cols := make([]string, len(jobColumnNames))
	for i, c := range jobColumnNames {
		switch c {
		case "unique_states":
			cols[i] = prefix + c + "::integer AS unique_states"
		case "state":
			cols[i] = prefix + c + "::text AS state"
		default:
			cols[i] = prefix + c
		}
	}
	return strings.Join(cols, ", ")
}

var (
	jobCols  = jobColumns("")
	jobColsJ = jobColumns("j")
)

// jobScan holds the destinations of one row.
type jobScan struct {
	row          millracetype.JobRow
	attempt      int16
	maxAttempts  int16
	priority     int16
	errors       [][]byte
	state        string
	uniqueStates *int32
}

func (s *jobScan) dest() []any {
	r := &s.row
	return []any{&r.ID, &r.Args, &s.attempt, &r.AttemptedAt, &r.AttemptedBy, &r.CreatedAt, &s.errors,
		&r.FinalizedAt, &r.Kind, &s.maxAttempts, &r.Metadata, &s.priority, &r.Queue, &r.ScheduledAt,
		&s.state, &r.Tags, &r.UniqueKey, &s.uniqueStates}
}

// finish converts what was scanned into a JobRow. A malformed errors
// element is kept as an error entry saying so, never a failure of the whole
// query: one bad row must not strand the rows fetched with it.
func (s *jobScan) finish() *millracetype.JobRow {
	r := s.row
	r.Attempt = int(s.attempt)
	r.MaxAttempts = int(s.maxAttempts)
	r.Priority = int(s.priority)
	r.State = millracetype.JobState(s.state)
	r.CreatedAt = utc(r.CreatedAt)
	r.ScheduledAt = utc(r.ScheduledAt)
	r.AttemptedAt = utcPtr(r.AttemptedAt)
	r.FinalizedAt = utcPtr(r.FinalizedAt)
	if s.uniqueStates != nil {
		r.UniqueStates = byte(*s.uniqueStates)
	}
	if len(s.errors) > 0 {
		r.Errors = make([]millracetype.AttemptError, len(s.errors))
		for i, raw := range s.errors {
			if err := json.Unmarshal(raw, &r.Errors[i]); err != nil {
				r.Errors[i] = millracetype.AttemptError{Error: fmt.Sprintf("millrace: undecodable error entry: %v: %s", err, raw)}
			}
			r.Errors[i].At = r.Errors[i].At.UTC()
		}
	}
	if r.Tags == nil {
		r.Tags = []string{}
	}
	return &r
}

func scanJob(row pgx.CollectableRow) (*millracetype.JobRow, error) {
	var s jobScan
	if err := row.Scan(s.dest()...); err != nil {
		return nil, err
	}
	return s.finish(), nil
}

// scanJobNotified scans a job row followed by the count of notifications
// its statement sent (which is dropped).
func scanJobNotified(row pgx.CollectableRow) (*millracetype.JobRow, error) {
	var s jobScan
	var notified int64
	if err := row.Scan(append(s.dest(), &notified)...); err != nil {
		return nil, err
	}
	return s.finish(), nil
}

// encodeError renders an attempt error in River's JSON shape: at is RFC 3339
// with up to nine fractional digits.
func encodeError(e *millracetype.AttemptError) (string, error) {
	b, err := json.Marshal(struct {
		At      string `json:"at"`
		Attempt int    `json:"attempt"`
		Error   string `json:"error"`
		Trace   string `json:"trace"`
	}{e.At.UTC().Format(time.RFC3339Nano), e.Attempt, e.Error, e.Trace})
	return string(b), err
}
