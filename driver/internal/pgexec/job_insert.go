package pgexec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// The batch insert: one row per array element, in input order. A conflict
// on the unique index returns the existing row, flagged through xmax. The
// insert notifications ride in the same statement (an InitPlan evaluated
// once).
var sqlJobInsertMany = `
WITH input AS (
    SELECT u.ord, u.args::jsonb AS args, coalesce(u.created_at, now()) AS created_at, u.kind,
        u.max_attempts, coalesce(u.metadata::jsonb, '{}'::jsonb) AS metadata, u.priority, u.queue,
        coalesce(u.scheduled_at, now()) AS scheduled_at, u.state::{{schema}}river_job_state AS state,
        coalesce(string_to_array(u.tags, ','), '{}')::varchar(255)[] AS tags, u.unique_key,
        nullif(u.unique_states, 0)::bit(8) AS unique_states
    FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::smallint[], $5::text[], $6::smallint[],
        $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::bytea[], $12::integer[])
        WITH ORDINALITY AS u(args, created_at, kind, max_attempts, metadata, priority, queue,
            scheduled_at, state, tags, unique_key, unique_states, ord)
), inserted AS (
    INSERT INTO {{schema}}river_job AS j (args, created_at, kind, max_attempts, metadata, priority,
        queue, scheduled_at, state, tags, unique_key, unique_states)
    SELECT args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state,
        tags, unique_key, unique_states
    FROM input ORDER BY ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL
            AND {{schema}}river_job_state_in_bitmask(unique_states, state)
        DO UPDATE SET kind = j.kind
    RETURNING ` + jobColsJ + `, (j.xmax <> 0) AS duplicate
)
SELECT *, (SELECT count(pg_notify({{insert_channel}}, payload))
           FROM unnest($13::text[]) AS payload) AS notified
FROM inserted`

// sqlJobInsertManyReplace is sqlJobInsertMany for a batch with jobs that
// replace a duplicate that has not started (driver.JobInsertParams
// ReplaceArgs, ReplaceScheduledAt): each job's two flags come in $14 and
// $15, and the conflict's update, which otherwise changes nothing, sets
// args, scheduled_at and state from the proposed row when the existing row
// is in a state that has not started and the job's flag asks for it (a
// pending row keeps its state). The flags reach the update through the
// row's unique key, unique within the statement's rows (JobInsertMany
// sends one row per key); each IN (SELECT ...) is an uncorrelated subquery,
// which Postgres evaluates once into a hash table. The update takes the
// row lock first: a fetch that took the row before it leaves it running,
// which the update then leaves alone. Which rows were replaced is read
// from the returned rows (a duplicate now in one of those states had its
// flags applied). The statement is written out in full: the batch insert
// without replacements stays the statement it was.
var sqlJobInsertManyReplace = `
WITH input AS (
    SELECT u.ord, u.args::jsonb AS args, coalesce(u.created_at, now()) AS created_at, u.kind,
        u.max_attempts, coalesce(u.metadata::jsonb, '{}'::jsonb) AS metadata, u.priority, u.queue,
        coalesce(u.scheduled_at, now()) AS scheduled_at, u.state::{{schema}}river_job_state AS state,
        coalesce(string_to_array(u.tags, ','), '{}')::varchar(255)[] AS tags, u.unique_key,
        nullif(u.unique_states, 0)::bit(8) AS unique_states, u.replace_args, u.replace_scheduled_at
    FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::smallint[], $5::text[], $6::smallint[],
        $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::bytea[], $12::integer[],
        $14::boolean[], $15::boolean[])
        WITH ORDINALITY AS u(args, created_at, kind, max_attempts, metadata, priority, queue,
            scheduled_at, state, tags, unique_key, unique_states, replace_args, replace_scheduled_at, ord)
), inserted AS (
    INSERT INTO {{schema}}river_job AS j (args, created_at, kind, max_attempts, metadata, priority,
        queue, scheduled_at, state, tags, unique_key, unique_states)
    SELECT args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state,
        tags, unique_key, unique_states
    FROM input ORDER BY ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL
            AND {{schema}}river_job_state_in_bitmask(unique_states, state)
        DO UPDATE SET
            args = CASE
                WHEN j.state IN ('available', 'pending', 'retryable', 'scheduled')
                    AND excluded.unique_key IN (SELECT unique_key FROM input WHERE replace_args)
                THEN excluded.args ELSE j.args END,
            scheduled_at = CASE
                WHEN j.state IN ('available', 'pending', 'retryable', 'scheduled')
                    AND excluded.unique_key IN (SELECT unique_key FROM input WHERE replace_scheduled_at)
                THEN excluded.scheduled_at ELSE j.scheduled_at END,
            state = CASE
                WHEN j.state IN ('available', 'retryable', 'scheduled')
                    AND excluded.unique_key IN (SELECT unique_key FROM input WHERE replace_scheduled_at)
                THEN excluded.state ELSE j.state END
    RETURNING ` + jobColsJ + `, (j.xmax <> 0) AS duplicate
)
SELECT *, (SELECT count(pg_notify({{insert_channel}}, payload))
           FROM unnest($13::text[]) AS payload) AS notified
FROM inserted`

// notStarted reports whether a job in state s is one a replacing insert
// updates.
func notStarted(s millracetype.JobState) bool {
	switch s {
	case millracetype.JobStateAvailable, millracetype.JobStatePending, millracetype.JobStateRetryable,
		millracetype.JobStateScheduled:
		return true
	}
	return false
}

func replaces(j *driver.JobInsertParams) bool { return j.ReplaceArgs || j.ReplaceScheduledAt }

// foldReplacement applies a later job of the batch with the same unique
// key to dst (the row sent for the key), as if it were inserted after
// dst's: what it replaces, it replaces in dst too, and the flags carry over
// to a row that exists already.
func foldReplacement(i int, dst, j *driver.JobInsertParams) error {
	if j.ReplaceArgs {
		dst.Args, dst.ReplaceArgs = j.Args, true
	}
	if j.ReplaceScheduledAt {
		if dst.State == millracetype.JobStatePending && j.State != millracetype.JobStatePending {
			// The row sent would have to be pending if inserted and not if
			// replacing: one row cannot say both.
			return fmt.Errorf("job %d: replaces the run time of an earlier pending job with the same unique key in the same batch", i)
		}
		dst.ScheduledAt, dst.ReplaceScheduledAt = j.ScheduledAt, true
		if dst.State != millracetype.JobStatePending {
			dst.State = j.State
		}
	}
	return nil
}

// checkInsert validates what the database would otherwise reject with a
// less helpful message, and what this driver's encoding needs.
func checkInsert(i int, j *driver.JobInsertParams) error {
	if j == nil {
		return fmt.Errorf("job %d: nil params", i)
	}
	for _, tag := range j.Tags {
		if strings.Contains(tag, ",") {
			return fmt.Errorf("job %d: tag %q contains a comma", i, tag)
		}
	}
	switch j.State {
	case millracetype.JobStateAvailable, millracetype.JobStateScheduled, millracetype.JobStatePending:
	default:
		return fmt.Errorf("job %d: cannot insert a job in state %q", i, j.State)
	}
	if replaces(j) && (j.UniqueKey == nil || j.UniqueStates == 0) {
		return fmt.Errorf("job %d: replacing a duplicate needs a unique key and unique states", i)
	}
	return nil
}

func (e *executor) JobInsertMany(ctx context.Context, p *driver.JobInsertManyParams) ([]*driver.JobInsertResult, error) {
	if len(p.Jobs) == 0 {
		return nil, nil
	}
	// A unique key repeated within the batch would make the statement touch
	// one row twice, which Postgres refuses: insert the first occurrence only
	// and report the others as its duplicates.
	// A later job of a key that replaces folds into the row sent for it.
	firstOf := make([]int, len(p.Jobs))
	seen := map[string]int{}
	insert := make([]*driver.JobInsertParams, 0, len(p.Jobs))
	var folded map[int]bool // rows of insert that are copies, folded into
	replace := false
	for i, j := range p.Jobs {
		if err := checkInsert(i, j); err != nil {
			return nil, err
		}
		replace = replace || replaces(j)
		firstOf[i] = -1
		if j.UniqueKey != nil && j.UniqueStates != 0 {
			if first, ok := seen[string(j.UniqueKey)]; ok {
				firstOf[i] = first
				if replaces(j) {
					if !folded[first] {
						if folded == nil {
							folded = map[int]bool{}
						}
						row := *insert[first] // the caller's params stay as they are
						insert[first], folded[first] = &row, true
					}
					if err := foldReplacement(i, insert[first], j); err != nil {
						return nil, err
					}
				}
				continue
			}
			seen[string(j.UniqueKey)] = len(insert)
		}
		firstOf[i] = -2 - len(insert) // own row at index len(insert)
		insert = append(insert, j)
	}

	n := len(insert)
	a := insertArrays(insert)
	a.notify = queuePayloads(p.NotifyQueues)
	var rows pgx.Rows
	var err error
	if !replace {
		rows, err = e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobInsertMany),
			a.params()...)
	} else {
		replaceArgs, replaceScheduledAt := make([]bool, n), make([]bool, n)
		for i, j := range insert {
			replaceArgs[i], replaceScheduledAt[i] = j.ReplaceArgs, j.ReplaceScheduledAt
		}
		rows, err = e.db.Query(ctx, e.sql.get(p.Schema, &sqlJobInsertManyReplace),
			append(a.params(), replaceArgs, replaceScheduledAt)...)
	}
	if err != nil {
		return nil, err
	}
	inserted, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*driver.JobInsertResult, error) {
		var s jobScan
		var dup bool
		var notified int64
		if err := row.Scan(append(s.dest(), &dup, &notified)...); err != nil {
			return nil, err
		}
		return &driver.JobInsertResult{Job: s.finish(), UniqueSkippedAsDuplicate: dup}, nil
	})
	if err != nil {
		return nil, err
	}
	if len(inserted) != n {
		return nil, fmt.Errorf("insert returned %d rows for %d jobs", len(inserted), n)
	}
	results := make([]*driver.JobInsertResult, len(p.Jobs))
	for i, j := range p.Jobs {
		if firstOf[i] <= -2 {
			res := inserted[-2-firstOf[i]]
			if !res.UniqueSkippedAsDuplicate && res.Job.Kind != j.Kind {
				return nil, errors.New("insert returned rows out of input order")
			}
			if res.UniqueSkippedAsDuplicate && replaces(j) && notStarted(res.Job.State) {
				// The row was in a state the update replaces in, so it did.
				res = &driver.JobInsertResult{Job: res.Job, UniqueReplaced: true}
			}
			results[i] = res
			continue
		}
		first := inserted[-2-firstOf[firstOf[i]]]
		// A later job of a key replaced (folded into the row sent) if the
		// row was inserted or replaced; else it is a duplicate left alone.
		replaced := replaces(j) && (!first.UniqueSkippedAsDuplicate || notStarted(first.Job.State))
		results[i] = &driver.JobInsertResult{Job: first.Job, UniqueSkippedAsDuplicate: !replaced, UniqueReplaced: replaced}
	}
	return results, nil
}

// jobArrays are the arrays ($1 to $13) of the batch insert statements.
type jobArrays struct {
	args         []string
	createdAt    []*time.Time
	kinds        []string
	maxAttempts  []int16
	metadata     []*string
	priority     []int16
	queues       []string
	scheduledAt  []*time.Time
	states       []string
	tags         []string
	uniqueKeys   [][]byte
	uniqueStates []int32
	notify       []string
}

func insertArrays(insert []*driver.JobInsertParams) *jobArrays {
	n := len(insert)
	a := &jobArrays{
		args:         make([]string, n),
		createdAt:    make([]*time.Time, n),
		kinds:        make([]string, n),
		maxAttempts:  make([]int16, n),
		metadata:     make([]*string, n),
		priority:     make([]int16, n),
		queues:       make([]string, n),
		scheduledAt:  make([]*time.Time, n),
		states:       make([]string, n),
		tags:         make([]string, n),
		uniqueKeys:   make([][]byte, n),
		uniqueStates: make([]int32, n),
	}
	for i, j := range insert {
		a.args[i] = string(j.Args)
		a.createdAt[i] = j.CreatedAt
		a.kinds[i] = j.Kind
		a.maxAttempts[i] = int16(j.MaxAttempts)
		if j.Metadata != nil {
			m := string(j.Metadata)
			a.metadata[i] = &m
		}
		a.priority[i] = int16(j.Priority)
		a.queues[i] = j.Queue
		a.scheduledAt[i] = j.ScheduledAt
		a.states[i] = string(j.State)
		a.tags[i] = strings.Join(j.Tags, ",")
		a.uniqueKeys[i] = j.UniqueKey
		a.uniqueStates[i] = int32(j.UniqueStates)
	}
	return a
}

func (a *jobArrays) params() []any {
	return []any{a.args, a.createdAt, a.kinds, a.maxAttempts, a.metadata, a.priority, a.queues,
		a.scheduledAt, a.states, a.tags, a.uniqueKeys, a.uniqueStates, a.notify}
}

// sqlJobInsertPlain is the batch insert without its conflict clause: a
// unique-key conflict fails the statement, as it fails a COPY. It is
// JobInsertCopy on a DB that cannot COPY.
var sqlJobInsertPlain = strings.Replace(sqlJobInsertMany, sqlInsertConflict, "", 1)

// sqlInsertConflict is the conflict clause of sqlJobInsertMany.
const sqlInsertConflict = `
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL
            AND {{schema}}river_job_state_in_bitmask(unique_states, state)
        DO UPDATE SET kind = j.kind`

// insertPlain inserts jobs with sqlJobInsertPlain and returns how many.
func (e *executor) insertPlain(ctx context.Context, p *driver.JobInsertManyParams) (int64, error) {
	a := insertArrays(p.Jobs)
	a.notify = queuePayloads(p.NotifyQueues)
	tag, err := e.db.Exec(ctx, e.sql.get(p.Schema, &sqlJobInsertPlain), a.params()...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// copyColumns are the columns JobInsertCopy fills.
var copyColumns = []string{"args", "created_at", "kind", "max_attempts", "metadata", "priority", "queue",
	"scheduled_at", "state", "tags", "unique_key", "unique_states"}

func (e *executor) JobInsertCopy(ctx context.Context, p *driver.JobInsertManyParams) (int, error) {
	if len(p.Jobs) == 0 {
		return 0, nil
	}
	for i, j := range p.Jobs {
		if err := checkInsert(i, j); err != nil {
			return 0, err
		}
		if replaces(j) {
			return 0, fmt.Errorf("job %d: COPY cannot replace a duplicate (ReplaceArgs, ReplaceScheduledAt): use JobInsertMany", i)
		}
	}
	var count int64
	err := e.inTx(ctx, func(tx *executor) error {
		copier, ok := tx.db.(Copier)
		if !ok {
			var err error
			count, err = tx.insertPlain(ctx, p)
			return err
		}
		// COPY takes no defaults for columns it is given, so the clock is
		// read once for rows that leave times unset.
		var now time.Time
		if err := tx.db.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
			return err
		}
		table := pgx.Identifier{"river_job"}
		if p.Schema != "" {
			table = pgx.Identifier{p.Schema, "river_job"}
		}
		i := 0
		var err error
		count, err = copier.CopyFrom(ctx, table, copyColumns, pgx.CopyFromFunc(func() ([]any, error) {
			if i >= len(p.Jobs) {
				return nil, nil
			}
			j := p.Jobs[i]
			i++
			createdAt, scheduledAt := now, now
			if j.CreatedAt != nil {
				createdAt = *j.CreatedAt
			}
			if j.ScheduledAt != nil {
				scheduledAt = *j.ScheduledAt
			}
			metadata := j.Metadata
			if metadata == nil {
				metadata = []byte("{}")
			}
			tags := j.Tags
			if tags == nil {
				tags = []string{}
			}
			var uniqueStates pgtype.Bits
			if j.UniqueStates != 0 {
				uniqueStates = pgtype.Bits{Bytes: []byte{j.UniqueStates}, Len: 8, Valid: true}
			}
			return []any{j.Args, createdAt, j.Kind, int16(j.MaxAttempts), metadata, int16(j.Priority),
				j.Queue, scheduledAt, string(j.State), tags, j.UniqueKey, uniqueStates}, nil
		}))
		if err != nil {
			return err
		}
		if len(p.NotifyQueues) > 0 {
			return tx.NotifyMany(ctx, &driver.NotifyManyParams{Schema: p.Schema, Topic: driver.TopicInsert, Payloads: queuePayloads(p.NotifyQueues)})
		}
		return nil
	})
	return int(count), err
}

// queuePayloads renders insert notification payloads byte for byte as
// River sends them: {"queue": "<name>"}.
func queuePayloads(queues []string) []string {
	out := make([]string, len(queues))
	for i, q := range queues {
		out[i] = driver.InsertNotifyPayload(q)
	}
	return out
}
