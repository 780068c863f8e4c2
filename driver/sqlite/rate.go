package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// RateStateRead implements driver.Executor: the clock (the transaction's
// start inside one, as the fetch in it writes attempted_at), and the
// queue's current counts and pauses.
func (e *executor) RateStateRead(ctx context.Context, p *driver.RateStateParams) (*driver.RateState, error) {
	st := &driver.RateState{Now: e.now()}
	now := fmtTime(st.Now)
	err := e.query(ctx, `SELECT rate_key, window_start, window_end, started FROM `+qualify(p.Schema)+`millrace_rate
		WHERE queue = ? AND window_end > ?`, []any{p.Queue, now}, func(r *sql.Rows) error {
		var c driver.RateCount
		var ws, we string
		if err := r.Scan(&c.Key, &ws, &we, &c.Started); err != nil {
			return err
		}
		var err error
		if c.WindowStart, err = parseTime(ws); err != nil {
			return err
		}
		if c.WindowEnd, err = parseTime(we); err != nil {
			return err
		}
		st.Counts = append(st.Counts, &c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	st.Pauses, err = e.loadPauses(ctx, p.Schema, `WHERE queue = ? AND paused_until > ? ORDER BY kind, args`, p.Queue, now)
	if err != nil {
		return nil, err
	}
	if len(st.Pauses) == 0 {
		st.Pauses = nil
	}
	return st, nil
}

func (e *executor) RateCountAdd(ctx context.Context, p *driver.RateCountAddParams) error {
	for _, c := range p.Add {
		if c.Started < 0 || !c.WindowEnd.After(c.WindowStart) {
			return fmt.Errorf("add rate count %q: bad count %d or window %v..%v", c.Key, c.Started, c.WindowStart, c.WindowEnd)
		}
	}
	return e.inTx(ctx, func(tx *executor) error {
		now := fmtTime(p.Now)
		if _, err := tx.exec(ctx, `DELETE FROM `+qualify(p.Schema)+`millrace_rate WHERE queue = ? AND window_end <= ?`, p.Queue, now); err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `DELETE FROM `+qualify(p.Schema)+`millrace_pause WHERE queue = ? AND paused_until <= ?`, p.Queue, now); err != nil {
			return err
		}
		for _, c := range p.Add {
			if _, err := tx.exec(ctx, `INSERT INTO `+qualify(p.Schema)+`millrace_rate (queue, rate_key, window_start, window_end, started)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (queue, rate_key, window_start) DO UPDATE SET started = started + excluded.started`,
				p.Queue, c.Key, fmtTime(c.WindowStart), fmtTime(c.WindowEnd), c.Started); err != nil {
				return err
			}
		}
		return nil
	})
}

// JobRateScan implements driver.Executor: the candidates are read in fetch
// order and dealt into rounds in Go.
func (e *executor) JobRateScan(ctx context.Context, p *driver.JobRateScanParams) ([]*driver.JobRateCandidate, error) {
	if p.Max <= 0 {
		return nil, nil
	}
	now := fmtTime(e.now())
	pauses, err := e.loadPauses(ctx, p.Schema, `WHERE queue = ? AND paused_until > ?`, p.Queue, now)
	if err != nil {
		return nil, err
	}
	type pause struct {
		kind string
		args any
	}
	ps := make([]pause, len(pauses))
	for i, pp := range pauses {
		ps[i].kind = pp.Kind
		if err := json.Unmarshal(pp.Args, &ps[i].args); err != nil {
			return nil, fmt.Errorf("pause of queue %q: args: %w", p.Queue, err)
		}
	}
	where := `WHERE state = 'available' AND queue = ? AND scheduled_at <= ?`
	args := []any{p.Queue, now}
	if len(p.Kinds) > 0 {
		where += ` AND kind IN (` + placeholders(len(p.Kinds)) + `)`
		for _, k := range p.Kinds {
			args = append(args, k)
		}
	}
	type cand struct {
		c     *driver.JobRateCandidate
		round int
		ord   int
	}
	var cands []cand
	inGroup := map[string]int{}
	err = e.query(ctx, `SELECT id, kind, args FROM `+qualify(p.Schema)+`river_job `+where+` ORDER BY priority, scheduled_at, id`,
		args, func(r *sql.Rows) error {
			var c driver.JobRateCandidate
			var jobArgs string
			if err := r.Scan(&c.ID, &c.Kind, &jobArgs); err != nil {
				return err
			}
			for _, pp := range ps {
				if (pp.kind == "" || pp.kind == c.Kind) && metadataContains([]byte(jobArgs), pp.args) {
					return nil
				}
			}
			c.Part = argsPart([]byte(jobArgs), p.Keys)
			b, _ := json.Marshal(append([]string{c.Kind}, c.Part...))
			g := string(b)
			inGroup[g]++
			if p.PerGroup > 0 && inGroup[g] > p.PerGroup {
				return nil
			}
			cands = append(cands, cand{&c, inGroup[g], len(cands)})
			return nil
		})
	if err != nil {
		return nil, err
	}
	// Rounds: the first of every group in fetch order, then the second...
	slices.SortFunc(cands, func(a, b cand) int {
		if a.round != b.round {
			return a.round - b.round
		}
		return a.ord - b.ord
	})
	out := make([]*driver.JobRateCandidate, 0, min(len(cands), p.Max))
	for _, c := range cands {
		if len(out) == p.Max {
			break
		}
		out = append(out, c.c)
	}
	return out, nil
}

// pauseArgs is a pause's args in Postgres' jsonb text form ({} when
// empty), so that equal objects are one key of millrace_pause whatever
// their spacing and key order.
func pauseArgs(b []byte) (string, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return "{}", nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", fmt.Errorf("pause args are not JSON: %w", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return "", errors.New("pause args must be a JSON object")
	}
	return jsonbText(v), nil
}

func (e *executor) loadPauses(ctx context.Context, schema, where string, args ...any) ([]*millracetype.Pause, error) {
	out := []*millracetype.Pause{}
	err := e.query(ctx, `SELECT queue, kind, args, paused_until FROM `+qualify(schema)+`millrace_pause `+where, args, func(r *sql.Rows) error {
		var p millracetype.Pause
		var args, until string
		if err := r.Scan(&p.Queue, &p.Kind, &args, &until); err != nil {
			return err
		}
		p.Args = []byte(args)
		var err error
		if p.Until, err = parseTime(until); err != nil {
			return err
		}
		out = append(out, &p)
		return nil
	})
	return out, err
}

func (e *executor) PauseSet(ctx context.Context, p *driver.PauseSetParams) (*millracetype.Pause, error) {
	ps := p.Pause
	args, err := pauseArgs(ps.Args)
	if err != nil {
		return nil, fmt.Errorf("set pause of queue %q: %w", ps.Queue, err)
	}
	var out *millracetype.Pause
	err = e.inTx(ctx, func(tx *executor) error {
		if _, err := tx.exec(ctx, `INSERT INTO `+qualify(p.Schema)+`millrace_pause (queue, kind, args, paused_until, created_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (queue, kind, args) DO UPDATE SET paused_until = excluded.paused_until`,
			ps.Queue, ps.Kind, args, fmtTime(ps.Until), fmtTime(e.now())); err != nil {
			return err
		}
		rows, err := tx.loadPauses(ctx, p.Schema, `WHERE queue = ? AND kind = ? AND args = ?`, ps.Queue, ps.Kind, args)
		if err != nil {
			return err
		}
		if len(rows) != 1 {
			return errors.New("pause row vanished")
		}
		out = rows[0]
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set pause of queue %q: %w", ps.Queue, err)
	}
	return out, nil
}

func (e *executor) PauseGetMany(ctx context.Context, p *driver.PauseGetManyParams) ([]*millracetype.Pause, error) {
	return e.loadPauses(ctx, p.Schema, `WHERE (? = '' OR queue = ?) AND (? OR paused_until > ?) ORDER BY queue, kind, args`,
		p.Queue, p.Queue, p.All, fmtTime(dbNow()))
}

func (e *executor) PauseDelete(ctx context.Context, p *driver.PauseDeleteParams) (bool, error) {
	args, err := pauseArgs(p.Args)
	if err != nil {
		return false, err
	}
	n, err := e.exec(ctx, `DELETE FROM `+qualify(p.Schema)+`millrace_pause WHERE queue = ? AND kind = ? AND args = ?`, p.Queue, p.Kind, args)
	return n > 0, err
}
