package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// checkInsert validates a job to insert.
func checkInsert(i int, j *driver.JobInsertParams) error {
	if j == nil {
		return fmt.Errorf("job %d: nil params", i)
	}
	switch j.State {
	case millracetype.JobStateAvailable, millracetype.JobStateScheduled, millracetype.JobStatePending:
	default:
		return fmt.Errorf("job %d: cannot insert a job in state %q", i, j.State)
	}
	if (j.ReplaceArgs || j.ReplaceScheduledAt) && (j.UniqueKey == nil || j.UniqueStates == 0) {
		return fmt.Errorf("job %d: replacing a duplicate needs a unique key and unique states", i)
	}
	return nil
}

// newRow is the row a JobInsertParams inserts, times defaulting to now.
func newRow(j *driver.JobInsertParams, now time.Time) *millracetype.JobRow {
	r := &millracetype.JobRow{
		Args: j.Args, CreatedAt: now, Kind: j.Kind, MaxAttempts: j.MaxAttempts, Metadata: j.Metadata,
		Priority: j.Priority, Queue: j.Queue, ScheduledAt: now, State: j.State, Tags: j.Tags,
		UniqueKey: j.UniqueKey, UniqueStates: j.UniqueStates,
	}
	if j.CreatedAt != nil {
		r.CreatedAt = j.CreatedAt.UTC().Truncate(time.Microsecond)
	}
	if j.ScheduledAt != nil {
		r.ScheduledAt = j.ScheduledAt.UTC().Truncate(time.Microsecond)
	}
	if r.Metadata == nil {
		r.Metadata = []byte(`{}`)
	}
	if r.Tags == nil {
		r.Tags = []string{} // as a read gives them back
	}
	return r
}

// notStarted reports whether a replacing insert updates a row in state s.
func notStarted(s millracetype.JobState) bool {
	switch s {
	case millracetype.JobStateAvailable, millracetype.JobStatePending, millracetype.JobStateRetryable,
		millracetype.JobStateScheduled:
		return true
	}
	return false
}

// JobInsertMany implements driver.Executor: the jobs are inserted one by
// one, in input order, in one transaction, so a job whose unique key is
// held (by an earlier row or an earlier job of the batch) finds its holder
// and is reported as its duplicate, or replaces its values.
func (e *executor) JobInsertMany(ctx context.Context, p *driver.JobInsertManyParams) ([]*driver.JobInsertResult, error) {
	if len(p.Jobs) == 0 {
		return nil, nil
	}
	firstOf := map[string]*driver.JobInsertParams{}
	for i, j := range p.Jobs {
		if err := checkInsert(i, j); err != nil {
			return nil, err
		}
		if j.UniqueKey == nil || j.UniqueStates == 0 {
			continue
		}
		first, ok := firstOf[string(j.UniqueKey)]
		if !ok {
			firstOf[string(j.UniqueKey)] = j
			continue
		}
		if j.ReplaceScheduledAt && first.State == millracetype.JobStatePending && j.State != millracetype.JobStatePending {
			// Postgres sends one row per key: it could not be pending if
			// inserted and not if replacing. Both drivers refuse it.
			return nil, fmt.Errorf("job %d: replaces the run time of an earlier pending job with the same unique key in the same batch", i)
		}
	}
	results := make([]*driver.JobInsertResult, len(p.Jobs))
	err := e.inTx(ctx, func(tx *executor) error {
		now := e.now()
		ins, err := tx.newInserter(ctx, p.Schema)
		if err != nil {
			return err
		}
		defer ins.close()
		// The rows as the batch leaves them, by id: a later job of the
		// batch may replace an earlier one's values.
		rows := map[int64]*millracetype.JobRow{}
		ids := make([]int64, len(p.Jobs))
		for i, j := range p.Jobs {
			row := newRow(j, now)
			if j.UniqueKey != nil && j.UniqueStates != 0 && j.UniqueStates&stateBit(j.State) != 0 {
				holder, err := tx.uniqueHolder(ctx, p.Schema, j.UniqueKey, 0)
				if err != nil {
					return err
				}
				if holder != nil {
					replaced := false
					if (j.ReplaceArgs || j.ReplaceScheduledAt) && notStarted(holder.State) {
						if j.ReplaceArgs {
							holder.Args = j.Args
						}
						if j.ReplaceScheduledAt {
							holder.ScheduledAt = row.ScheduledAt
							if holder.State != millracetype.JobStatePending {
								holder.State = j.State
							}
						}
						if err := tx.saveJob(ctx, p.Schema, holder); err != nil {
							return err
						}
						replaced = true
					}
					ids[i], rows[holder.ID] = holder.ID, holder
					results[i] = &driver.JobInsertResult{UniqueSkippedAsDuplicate: !replaced, UniqueReplaced: replaced}
					continue
				}
			}
			if err := ins.insert(ctx, row); err != nil {
				return fmt.Errorf("job %d: %w", i, err)
			}
			ids[i], rows[row.ID] = row.ID, row
			results[i] = &driver.JobInsertResult{}
		}
		for i, id := range ids {
			job := *rows[id]
			results[i].Job = &job
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// JobInsertCopy implements driver.Executor with plain inserts in one
// transaction (SQLite has no COPY); a unique-key conflict fails it all.
func (e *executor) JobInsertCopy(ctx context.Context, p *driver.JobInsertManyParams) (int, error) {
	for i, j := range p.Jobs {
		if err := checkInsert(i, j); err != nil {
			return 0, err
		}
		if j.ReplaceArgs || j.ReplaceScheduledAt {
			return 0, fmt.Errorf("job %d: JobInsertCopy cannot replace duplicates (ReplaceArgs, ReplaceScheduledAt): use JobInsertMany", i)
		}
	}
	if len(p.Jobs) == 0 {
		return 0, nil
	}
	err := e.inTx(ctx, func(tx *executor) error {
		now := e.now()
		ins, err := tx.newInserter(ctx, p.Schema)
		if err != nil {
			return err
		}
		defer ins.close()
		for i, j := range p.Jobs {
			if err := ins.insert(ctx, newRow(j, now)); err != nil {
				return fmt.Errorf("job %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(p.Jobs), nil
}

func (e *executor) JobInsertFull(ctx context.Context, p *driver.JobInsertFullParams) (*millracetype.JobRow, error) {
	now := e.now()
	row := &millracetype.JobRow{
		Args: p.Args, Attempt: p.Attempt, AttemptedAt: p.AttemptedAt, AttemptedBy: p.AttemptedBy,
		CreatedAt: now, Errors: p.Errors, FinalizedAt: p.FinalizedAt, Kind: p.Kind, MaxAttempts: p.MaxAttempts,
		Metadata: p.Metadata, Priority: p.Priority, Queue: p.Queue, ScheduledAt: now, State: p.State,
		Tags: p.Tags, UniqueKey: p.UniqueKey, UniqueStates: p.UniqueStates,
	}
	if row.Args == nil {
		row.Args = []byte(`{}`)
	}
	if p.CreatedAt != nil {
		row.CreatedAt = *p.CreatedAt
	}
	if p.ScheduledAt != nil {
		row.ScheduledAt = *p.ScheduledAt
	}
	if row.MaxAttempts == 0 {
		row.MaxAttempts = 25
	}
	if row.Priority == 0 {
		row.Priority = 1
	}
	if row.Queue == "" {
		row.Queue = "default"
	}
	if row.State == "" {
		row.State = millracetype.JobStateAvailable
	}
	var out *millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		if err := tx.insertJob(ctx, p.Schema, row); err != nil {
			return err
		}
		var err error
		out, err = tx.loadJob(ctx, p.Schema, row.ID)
		return err
	})
	return out, err
}

func (e *executor) JobGetByID(ctx context.Context, p *driver.JobGetByIDParams) (*millracetype.JobRow, error) {
	return e.loadJob(ctx, p.Schema, p.ID)
}

func (e *executor) JobGetByIDMany(ctx context.Context, p *driver.JobGetByIDManyParams) ([]*millracetype.JobRow, error) {
	jobs, err := e.loadJobsByID(ctx, p.Schema, p.IDs)
	if jobs == nil && err == nil {
		jobs = []*millracetype.JobRow{}
	}
	return jobs, err
}

// markRunning changes a fetched row as a fetch does.
func markRunning(j *millracetype.JobRow, clientID string, at time.Time) {
	j.State = millracetype.JobStateRunning
	j.Attempt++
	j.AttemptedAt = &at
	by := append(slices.Clone(j.AttemptedBy), clientID)
	if len(by) > 100 {
		by = by[len(by)-100:]
	}
	j.AttemptedBy = by
}

// JobGetAvailable implements driver.Executor: in one transaction (holding
// SQLite's write lock), select the due jobs in fetch order and mark them
// running. No other fetch can run in between, so no job is fetched twice.
func (e *executor) JobGetAvailable(ctx context.Context, p *driver.JobGetAvailableParams) ([]*millracetype.JobRow, error) {
	if p.Max <= 0 {
		return nil, nil
	}
	var jobs []*millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		now := e.now()
		if p.Now != nil {
			now = p.Now.UTC().Truncate(time.Microsecond)
		}
		where := `WHERE state = 'available' AND queue = ? AND scheduled_at <= ?`
		args := []any{p.Queue, fmtTime(now)}
		if len(p.Kinds) > 0 {
			where += ` AND kind IN (` + placeholders(len(p.Kinds)) + `)`
			for _, k := range p.Kinds {
				args = append(args, k)
			}
		}
		if a := p.After; a != nil {
			where += ` AND (priority, scheduled_at, id) > (?, ?, ?)`
			args = append(args, a.Priority, fmtTime(a.ScheduledAt), a.ID)
		}
		// One statement: the selection and the update under the write
		// lock the transaction holds.
		q := `UPDATE ` + qualify(p.Schema) + `river_job SET state = 'running', attempt = attempt + 1, attempted_at = ?,
			attempted_by = json_insert(coalesce(attempted_by, '[]'), '$[#]', ?)
			WHERE id IN (SELECT id FROM ` + qualify(p.Schema) + `river_job ` + where + ` ORDER BY priority, scheduled_at, id LIMIT ?)
			RETURNING ` + jobCols
		err := tx.query(ctx, q, append(append([]any{fmtTime(now), p.ClientID}, args...), p.Max), func(r *sql.Rows) error {
			j, err := scanJob(r)
			if err == nil {
				jobs = append(jobs, j)
			}
			return err
		})
		if err != nil {
			return err
		}
		slices.SortFunc(jobs, fetchOrder)
		// attempted_by keeps the last 100 (River's rule): the rare row
		// past it is cut here.
		for _, j := range jobs {
			if len(j.AttemptedBy) > 100 {
				j.AttemptedBy = j.AttemptedBy[len(j.AttemptedBy)-100:]
				if err := tx.saveJob(ctx, p.Schema, j); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return jobs, nil
}

// JobGetAvailableByID implements driver.Executor.
func (e *executor) JobGetAvailableByID(ctx context.Context, p *driver.JobGetAvailableByIDParams) ([]*millracetype.JobRow, error) {
	var out []*millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		now := e.now()
		jobs, err := tx.loadJobsByID(ctx, p.Schema, p.IDs)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if j.State != millracetype.JobStateAvailable || j.ScheduledAt.After(now) {
				continue
			}
			markRunning(j, p.ClientID, now)
			if err := tx.saveJob(ctx, p.Schema, j); err != nil {
				return err
			}
			out = append(out, j)
		}
		slices.SortFunc(out, fetchOrder)
		return nil
	})
	return out, err
}

// fetchOrder orders jobs by priority, scheduled_at, id.
func fetchOrder(a, b *millracetype.JobRow) int {
	if a.Priority != b.Priority {
		return a.Priority - b.Priority
	}
	if c := a.ScheduledAt.Compare(b.ScheduledAt); c != 0 {
		return c
	}
	switch {
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return 0
}

func (e *executor) JobReturnUnstarted(ctx context.Context, p *driver.JobReturnUnstartedParams) ([]*millracetype.JobRow, error) {
	if len(p.IDs) != len(p.Attempts) {
		return nil, fmt.Errorf("job return: %d IDs but %d attempts", len(p.IDs), len(p.Attempts))
	}
	if len(p.IDs) == 0 {
		return nil, nil
	}
	attempt := make(map[int64]int, len(p.IDs))
	for i, id := range p.IDs {
		attempt[id] = p.Attempts[i]
	}
	var out []*millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		jobs, err := tx.loadJobsByID(ctx, p.Schema, p.IDs)
		if err != nil {
			return err
		}
		now := e.now()
		for _, j := range jobs {
			if j.State != millracetype.JobStateRunning || j.Attempt != attempt[j.ID] || j.Attempt <= 0 ||
				len(j.AttemptedBy) == 0 || j.AttemptedBy[len(j.AttemptedBy)-1] != p.ClientID {
				continue
			}
			if hasKey(j.Metadata, "cancel_attempted_at") {
				j.State, j.FinalizedAt = millracetype.JobStateCancelled, &now
			} else {
				j.State = millracetype.JobStateAvailable
			}
			if j.Attempt <= 1 {
				j.AttemptedAt = nil
			}
			j.Attempt--
			j.AttemptedBy = j.AttemptedBy[:len(j.AttemptedBy)-1]
			if err := tx.saveJob(ctx, p.Schema, j); err != nil {
				return err
			}
			out = append(out, j)
		}
		return nil
	})
	return out, err
}

// setState applies one outcome to its row (see driver.JobSetState) and
// reports whether the row is the outcome's own (running its attempt).
func setState(j *millracetype.JobRow, u *driver.JobSetState, now time.Time) (ours bool, err error) {
	ours = j.State == millracetype.JobStateRunning && (u.Attempt == 0 || j.Attempt == u.Attempt)
	if !ours {
		if u.MetadataUpdates != nil && !u.OnlyIfRunning && (u.Attempt == 0 || j.Attempt == u.Attempt) {
			j.Metadata, err = mergeObject(j.Metadata, u.MetadataUpdates)
		}
		return false, err
	}
	cancel := (u.State == millracetype.JobStateAvailable || u.State == millracetype.JobStateRetryable ||
		u.State == millracetype.JobStateScheduled) && hasKey(j.Metadata, "cancel_attempted_at")
	if cancel {
		j.State, j.FinalizedAt = millracetype.JobStateCancelled, &now
	} else {
		j.State, j.FinalizedAt = u.State, u.FinalizedAt
		if u.ScheduledAt != nil {
			j.ScheduledAt = u.ScheduledAt.UTC()
		}
		if u.AttemptDecrement {
			j.Attempt = max(j.Attempt-1, 0)
		}
	}
	if u.Error != nil {
		e := *u.Error
		e.At = e.At.UTC()
		j.Errors = append(j.Errors, e)
	}
	if u.MetadataUpdates != nil {
		if j.Metadata, err = mergeObject(j.Metadata, u.MetadataUpdates); err != nil {
			return true, err
		}
	}
	if u.SnoozeIncrement && !cancel {
		if j.Metadata, err = setKey(j.Metadata, "snoozes", metadataCount(j.Metadata, "snoozes")+1); err != nil {
			return true, err
		}
	}
	return true, nil
}

func (e *executor) JobSetStateIfRunningMany(ctx context.Context, p *driver.JobSetStateIfRunningManyParams) ([]*millracetype.JobRow, error) {
	if len(p.Jobs) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(p.Jobs))
	for i, j := range p.Jobs {
		if !j.State.Valid() {
			return nil, fmt.Errorf("job %d: invalid state %q", j.ID, j.State)
		}
		if j.State.Finalized() != (j.FinalizedAt != nil) {
			return nil, fmt.Errorf("job %d: finalized_at must be given exactly for a final state (got state %q)", j.ID, j.State)
		}
		if j.Delete && j.State != millracetype.JobStateCompleted {
			return nil, fmt.Errorf("job %d: Delete is only valid with state completed (got state %q)", j.ID, j.State)
		}
		ids[i] = j.ID
	}
	var out []*millracetype.JobRow
	applied := 0
	err := e.inTx(ctx, func(tx *executor) error {
		jobs, err := tx.loadJobsByID(ctx, p.Schema, ids)
		if err != nil {
			return err
		}
		byID := make(map[int64]*millracetype.JobRow, len(jobs))
		for _, j := range jobs {
			byID[j.ID] = j
		}
		now := e.now()
		var deletes []int64
		// One prepared statement for the columns an outcome writes: a
		// completer's batch is thousands of rows.
		stmt, err := tx.q.PrepareContext(ctx, `UPDATE `+qualify(p.Schema)+`river_job SET state = ?, finalized_at = ?,
			scheduled_at = ?, attempt = ?, errors = ?, metadata = ? WHERE id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, u := range p.Jobs {
			j := byID[u.ID]
			if j == nil {
				continue
			}
			before := *j
			ours, err := setState(j, u, now)
			if err != nil {
				return fmt.Errorf("job %d: %w", u.ID, err)
			}
			switch {
			case ours && u.Delete:
				deletes = append(deletes, j.ID)
			case ours || !slices.Equal(before.Metadata, j.Metadata):
				vals, err := jobValues(j)
				if err != nil {
					return err
				}
				// jobValues' order: state 13, finalized_at 6,
				// scheduled_at 12, attempt 1, errors 5, metadata 9.
				if _, err := stmt.ExecContext(ctx, vals[13], vals[6], vals[12], vals[1], vals[5], vals[9], j.ID); err != nil {
					return err
				}
			default:
				continue
			}
			applied++
			out = append(out, j)
		}
		return tx.deleteJobs(ctx, p.Schema, deletes)
	})
	if err != nil {
		return nil, err
	}
	if p.Applied != nil {
		*p.Applied = applied
	}
	if p.NoRows {
		return nil, nil
	}
	return out, nil
}

func (e *executor) JobCancel(ctx context.Context, p *driver.JobCancelParams) (*millracetype.JobRow, error) {
	var out *millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		j, err := tx.loadJob(ctx, p.Schema, p.ID)
		if err != nil {
			return err
		}
		out = j
		if j.FinalizedAt != nil {
			return nil
		}
		if j.Metadata, err = setKey(j.Metadata, "cancel_attempted_at", p.CancelAttemptedAt.UTC().Format(time.RFC3339Nano)); err != nil {
			return fmt.Errorf("job %d: %w", j.ID, err)
		}
		if j.State != millracetype.JobStateRunning {
			now := e.now()
			j.State, j.FinalizedAt = millracetype.JobStateCancelled, &now
		}
		return tx.saveJob(ctx, p.Schema, j)
	})
	return out, err
}

// retry changes a job as JobRetry does and reports whether it did.
func retry(j *millracetype.JobRow, now time.Time) (bool, error) {
	if j.State == millracetype.JobStateRunning || (j.State == millracetype.JobStateAvailable && !j.ScheduledAt.After(now)) {
		return false, nil
	}
	var err error
	if j.Metadata, err = deleteKey(j.Metadata, "cancel_attempted_at"); err != nil {
		return false, fmt.Errorf("job %d: %w", j.ID, err)
	}
	j.State, j.ScheduledAt, j.FinalizedAt = millracetype.JobStateAvailable, now, nil
	if j.Attempt == j.MaxAttempts {
		j.MaxAttempts++
	}
	return true, nil
}

func (e *executor) JobRetry(ctx context.Context, p *driver.JobRetryParams) (*millracetype.JobRow, error) {
	var out *millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		j, err := tx.loadJob(ctx, p.Schema, p.ID)
		if err != nil {
			return err
		}
		out = j
		now := e.now()
		if p.Now != nil {
			now = p.Now.UTC().Truncate(time.Microsecond)
		}
		changed, err := retry(j, now)
		if err != nil || !changed {
			return err
		}
		return tx.saveJob(ctx, p.Schema, j)
	})
	return out, err
}

func (e *executor) JobDelete(ctx context.Context, p *driver.JobDeleteParams) (*millracetype.JobRow, error) {
	var out *millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		j, err := tx.loadJob(ctx, p.Schema, p.ID)
		if err != nil {
			return err
		}
		out = j
		if j.State == millracetype.JobStateRunning {
			return nil
		}
		return tx.deleteJobs(ctx, p.Schema, []int64{j.ID})
	})
	if err != nil {
		return nil, err
	}
	if out.State == millracetype.JobStateRunning {
		return out, fmt.Errorf("delete job %d: %w", p.ID, millracetype.ErrJobRunning)
	}
	return out, nil
}

func (e *executor) JobSchedule(ctx context.Context, p *driver.JobScheduleParams) ([]*driver.JobScheduleResult, error) {
	var out []*driver.JobScheduleResult
	err := e.inTx(ctx, func(tx *executor) error {
		due, err := tx.loadJobs(ctx, p.Schema, `WHERE state IN ('retryable', 'scheduled') AND scheduled_at <= ?
			ORDER BY priority, scheduled_at, id LIMIT ?`, fmtTime(p.Horizon), p.Max)
		if err != nil {
			return err
		}
		inBatch := make(map[int64]bool, len(due))
		for _, j := range due {
			inBatch[j.ID] = true
		}
		taken := map[string]bool{}
		for _, j := range due {
			conflict := false
			if j.UniqueKey != nil && j.UniqueStates&stateBit(millracetype.JobStateAvailable) != 0 {
				key := string(j.UniqueKey)
				if taken[key] {
					conflict = true
				} else {
					taken[key] = true
					holders, err := tx.loadJobs(ctx, p.Schema, `AS o WHERE o.unique_key = ? AND `+sqlInUniqueIndex, j.UniqueKey)
					if err != nil {
						return err
					}
					for _, h := range holders {
						if !inBatch[h.ID] {
							conflict = true
						}
					}
				}
			}
			if conflict {
				at := p.Now.UTC().Truncate(time.Microsecond)
				j.State, j.FinalizedAt = millracetype.JobStateDiscarded, &at
				if j.Metadata, err = setKey(j.Metadata, "unique_key_conflict", "scheduler_discarded"); err != nil {
					return fmt.Errorf("job %d: %w", j.ID, err)
				}
			} else {
				j.State = millracetype.JobStateAvailable
			}
			out = append(out, &driver.JobScheduleResult{Job: j, ConflictDiscarded: conflict})
		}
		// Discards first: a job made available must not meet, in the
		// unique index, one of the batch still to be discarded.
		for _, pass := range []bool{true, false} {
			for _, r := range out {
				if r.ConflictDiscarded == pass {
					if err := tx.saveJob(ctx, p.Schema, r.Job); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	return out, err
}

func (e *executor) JobGetStuck(ctx context.Context, p *driver.JobGetStuckParams) ([]*millracetype.JobRow, error) {
	if p.Max <= 0 {
		return nil, fmt.Errorf("get stuck jobs: max %d must be positive", p.Max)
	}
	where := `WHERE state = 'running' AND attempted_at < ? AND id > ?`
	args := []any{fmtTime(p.StuckHorizon), p.AfterID}
	if p.SkipLiveClients {
		where += ` AND NOT EXISTS (SELECT 1 FROM ` + qualify(p.Schema) + `millrace_client AS c
			WHERE c.client_id = attempted_by ->> (json_array_length(attempted_by) - 1) AND ` + sqlClientAlive("c") + `)`
		args = append(args, e.now().UnixMicro())
	}
	jobs, err := e.loadJobs(ctx, p.Schema, where+` ORDER BY id LIMIT ?`, append(args, p.Max)...)
	if jobs == nil && err == nil {
		jobs = []*millracetype.JobRow{}
	}
	return jobs, err
}

func (e *executor) JobRescueMany(ctx context.Context, p *driver.JobRescueManyParams) (int, error) {
	if len(p.Jobs) == 0 {
		return 0, nil
	}
	ids := make([]int64, len(p.Jobs))
	for i, r := range p.Jobs {
		if r.State.Finalized() != (r.FinalizedAt != nil) {
			return 0, fmt.Errorf("job %d: finalized_at must be given exactly for a final state (got state %q)", r.ID, r.State)
		}
		ids[i] = r.ID
	}
	n := 0
	err := e.inTx(ctx, func(tx *executor) error {
		jobs, err := tx.loadJobsByID(ctx, p.Schema, ids)
		if err != nil {
			return err
		}
		byID := make(map[int64]*millracetype.JobRow, len(jobs))
		for _, j := range jobs {
			byID[j.ID] = j
		}
		for _, r := range p.Jobs {
			j := byID[r.ID]
			if j == nil || j.State != millracetype.JobStateRunning || (r.Attempt != 0 && j.Attempt != r.Attempt) {
				continue
			}
			if p.StuckHorizon != nil && (j.AttemptedAt == nil || !j.AttemptedAt.Before(*p.StuckHorizon)) {
				continue
			}
			j.State, j.ScheduledAt, j.FinalizedAt = r.State, r.ScheduledAt.UTC(), r.FinalizedAt
			rescueErr := r.Error
			rescueErr.At = rescueErr.At.UTC()
			j.Errors = append(j.Errors, rescueErr)
			if j.Metadata, err = setKey(j.Metadata, "river:rescue_count", metadataCount(j.Metadata, "river:rescue_count")+1); err != nil {
				return fmt.Errorf("job %d: %w", j.ID, err)
			}
			if err := tx.saveJob(ctx, p.Schema, j); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func (e *executor) JobGetRunningBy(ctx context.Context, p *driver.JobGetRunningByParams) ([]*millracetype.JobRow, error) {
	if p.Max <= 0 {
		return nil, fmt.Errorf("get running jobs: max %d must be positive", p.Max)
	}
	if p.MinAge < 0 {
		return nil, fmt.Errorf("get running jobs: negative MinAge %v", p.MinAge)
	}
	if p.Before != nil && len(p.Before) != len(p.ClientIDs) {
		return nil, fmt.Errorf("get running jobs: %d Before times for %d clients", len(p.Before), len(p.ClientIDs))
	}
	if len(p.ClientIDs) == 0 {
		return []*millracetype.JobRow{}, nil
	}
	var conds []string
	var args []any
	for i, id := range p.ClientIDs {
		c := `attempted_by ->> (json_array_length(attempted_by) - 1) = ?`
		args = append(args, id)
		if p.Before != nil {
			c += ` AND attempted_at < ?`
			args = append(args, fmtTime(p.Before[i]))
		}
		conds = append(conds, `(`+c+`)`)
	}
	where := `WHERE state = 'running' AND id > ? AND (` + joinOr(conds) + `)`
	args = append([]any{p.AfterID}, args...)
	if p.MinAge > 0 {
		where += ` AND attempted_at < ?`
		args = append(args, fmtTime(e.now().Add(-p.MinAge)))
	}
	jobs, err := e.loadJobs(ctx, p.Schema, where+` ORDER BY id LIMIT ?`, append(args, p.Max)...)
	if jobs == nil && err == nil {
		jobs = []*millracetype.JobRow{}
	}
	return jobs, err
}

func joinOr(conds []string) string {
	s := ""
	for i, c := range conds {
		if i > 0 {
			s += " OR "
		}
		s += c
	}
	return s
}

func (e *executor) JobDeleteBefore(ctx context.Context, p *driver.JobDeleteBeforeParams) (int, error) {
	horizon := func(t *time.Time) any {
		if t == nil {
			return nil
		}
		return fmtTime(*t)
	}
	n, err := e.exec(ctx, render(p.Schema, `DELETE FROM {{schema}}river_job WHERE id IN (
		SELECT id FROM {{schema}}river_job
		WHERE (state = 'completed' AND finalized_at < ?) OR (state = 'cancelled' AND finalized_at < ?)
			OR (state = 'discarded' AND finalized_at < ?)
		ORDER BY id LIMIT ?)`),
		horizon(p.CompletedFinalizedAtBefore), horizon(p.CancelledFinalizedAtBefore), horizon(p.DiscardedFinalizedAtBefore), p.Max)
	return int(n), err
}

func (e *executor) JobMarkRunning(ctx context.Context, p *driver.JobMarkRunningParams) (*millracetype.JobRow, error) {
	var out *millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		j, err := tx.loadJob(ctx, p.Schema, p.ID)
		if err != nil {
			return err
		}
		if j.State == millracetype.JobStateRunning {
			return fmt.Errorf("job %d: %w", p.ID, millracetype.ErrJobRunning)
		}
		markRunning(j, p.ClientID, e.now())
		j.FinalizedAt = nil
		out = j
		return tx.saveJob(ctx, p.Schema, j)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (e *executor) JobUpdate(ctx context.Context, p *driver.JobUpdateParams) (*millracetype.JobRow, error) {
	var out *millracetype.JobRow
	err := e.inTx(ctx, func(tx *executor) error {
		j, err := tx.loadJob(ctx, p.Schema, p.ID)
		if err != nil {
			return err
		}
		if p.RunningAttempt != 0 && (j.State != millracetype.JobStateRunning || j.Attempt != p.RunningAttempt) {
			return fmt.Errorf("job %d: %w", p.ID, millracetype.ErrJobNotRunning)
		}
		out = j
		if p.MetadataMerge == nil {
			return nil
		}
		if j.Metadata, err = mergeObject(j.Metadata, p.MetadataMerge); err != nil {
			return fmt.Errorf("job %d: %w", p.ID, err)
		}
		return tx.saveJob(ctx, p.Schema, j)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
