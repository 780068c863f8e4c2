package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/millrace/millrace/driver"
)

const limitCols = `queue, kind, global_limit, local_limit, partition_limit, partition_by_kind, partition_args, created_at, updated_at`

func scanLimit(r rowScanner) (*driver.LimitRow, error) {
	var (
		row                   driver.LimitRow
		global, local, perPar sql.NullInt64
		byKind                int64
		args                  string
		created, updated      string
	)
	if err := r.Scan(&row.Queue, &row.Limit.Kind, &global, &local, &perPar, &byKind, &args, &created, &updated); err != nil {
		return nil, err
	}
	row.Limit.Global, row.Limit.Local, row.Limit.PerPartition = int(global.Int64), int(local.Int64), int(perPar.Int64)
	row.Limit.PartitionByKind = byKind != 0
	if err := json.Unmarshal([]byte(args), &row.Limit.PartitionByArgs); err != nil {
		return nil, fmt.Errorf("limit of queue %q: partition_args: %w", row.Queue, err)
	}
	if len(row.Limit.PartitionByArgs) == 0 {
		row.Limit.PartitionByArgs = nil
	}
	var err error
	if row.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if row.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &row, nil
}

func (e *executor) loadLimits(ctx context.Context, schema, where string, args ...any) ([]*driver.LimitRow, error) {
	out := []*driver.LimitRow{}
	err := e.query(ctx, `SELECT `+limitCols+` FROM `+qualify(schema)+`millrace_limit `+where, args, func(r *sql.Rows) error {
		l, err := scanLimit(r)
		if err == nil {
			out = append(out, l)
		}
		return err
	})
	return out, err
}

func (e *executor) LimitGetMany(ctx context.Context, p *driver.LimitGetManyParams) ([]*driver.LimitRow, error) {
	return e.loadLimits(ctx, p.Schema, `WHERE ? = '' OR queue = ? ORDER BY queue, kind`, p.Queue, p.Queue)
}

// nullIfZero is NULL for 0.
func nullIfZero(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

// LimitSet implements driver.Executor (the limits_changed notification
// has no listener to reach on SQLite; clients poll their limits).
func (e *executor) LimitSet(ctx context.Context, p *driver.LimitSetParams) (*driver.LimitRow, error) {
	if p.Queue == "" {
		return nil, errors.New("set limit: empty queue name")
	}
	l := p.Limit
	args := l.PartitionByArgs
	if args == nil {
		args = []string{}
	}
	argsJSON, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	byKind := 0
	if l.PartitionByKind {
		byKind = 1
	}
	var out *driver.LimitRow
	err = e.inTx(ctx, func(tx *executor) error {
		now := fmtTime(e.now())
		if _, err := tx.exec(ctx, `INSERT INTO `+qualify(p.Schema)+`millrace_limit (queue, kind, global_limit, local_limit, partition_limit,
			partition_by_kind, partition_args, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (queue, kind) DO UPDATE SET global_limit = excluded.global_limit, local_limit = excluded.local_limit,
			partition_limit = excluded.partition_limit, partition_by_kind = excluded.partition_by_kind,
			partition_args = excluded.partition_args, updated_at = excluded.updated_at`,
			p.Queue, l.Kind, nullIfZero(l.Global), nullIfZero(l.Local), nullIfZero(l.PerPartition), byKind, string(argsJSON), now, now); err != nil {
			return err
		}
		if _, err := tx.exec(ctx, `DELETE FROM `+qualify(p.Schema)+`millrace_limit_bound WHERE queue = ?`, p.Queue); err != nil {
			return err
		}
		rows, err := tx.loadLimits(ctx, p.Schema, `WHERE queue = ? AND kind = ?`, p.Queue, l.Kind)
		if err != nil {
			return err
		}
		if len(rows) != 1 {
			return fmt.Errorf("limit row vanished")
		}
		out = rows[0]
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set limit of queue %q kind %q: %w", p.Queue, l.Kind, err)
	}
	return out, nil
}

func (e *executor) LimitDelete(ctx context.Context, p *driver.LimitDeleteParams) (bool, error) {
	var n int64
	err := e.inTx(ctx, func(tx *executor) error {
		var err error
		if n, err = tx.exec(ctx, `DELETE FROM `+qualify(p.Schema)+`millrace_limit WHERE queue = ? AND kind = ?`, p.Queue, p.Kind); err != nil {
			return err
		}
		_, err = tx.exec(ctx, `DELETE FROM `+qualify(p.Schema)+`millrace_limit_bound WHERE queue = ?`, p.Queue)
		return err
	})
	return n > 0, err
}

func (e *executor) LimitBoundGet(ctx context.Context, p *driver.LimitBoundParams) (int, bool, error) {
	var bound int
	ok, err := e.queryOne(ctx, `SELECT bound FROM `+qualify(p.Schema)+`millrace_limit_bound WHERE queue = ?`, []any{p.Queue}, &bound)
	return bound, ok, err
}

func (e *executor) LimitBoundSet(ctx context.Context, p *driver.LimitBoundParams) error {
	_, err := e.exec(ctx, `INSERT INTO `+qualify(p.Schema)+`millrace_limit_bound (queue, bound, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (queue) DO UPDATE SET bound = excluded.bound, updated_at = excluded.updated_at`,
		p.Queue, p.Bound, fmtTime(e.now()))
	return err
}

// JobLimitScan implements driver.Executor: the queue's running jobs and
// its due available jobs are read, and grouped in Go.
func (e *executor) JobLimitScan(ctx context.Context, p *driver.JobLimitScanParams) (*driver.JobLimitScanResult, error) {
	res := &driver.JobLimitScanResult{}
	type key struct{ kind, part string }
	counts := map[key]*driver.JobLimitGroup{}
	err := e.query(ctx, `SELECT kind, args FROM `+qualify(p.Schema)+`river_job WHERE state = 'running' AND queue = ?`,
		[]any{p.Queue}, func(r *sql.Rows) error {
			var kind, args string
			if err := r.Scan(&kind, &args); err != nil {
				return err
			}
			part := argsPart([]byte(args), p.Keys)
			k := key{kind, strings.Join(part, "\x00")}
			if g := counts[k]; g != nil {
				g.Count++
			} else {
				g = &driver.JobLimitGroup{Kind: kind, Part: part, Count: 1}
				counts[k] = g
				res.Running = append(res.Running, g)
			}
			return nil
		})
	if err != nil || p.Candidates <= 0 {
		return res, err
	}
	where := `WHERE state = 'available' AND queue = ? AND scheduled_at <= ?`
	args := []any{p.Queue, fmtTime(e.now())}
	if len(p.Kinds) > 0 {
		where += ` AND kind IN (` + placeholders(len(p.Kinds)) + `)`
		for _, k := range p.Kinds {
			args = append(args, k)
		}
	}
	// Each candidate's rank in its group; with FirstPerGroup the first
	// ones of every group come before the others, so the scan reads the
	// whole queue then, and stops at Candidates otherwise.
	type cand struct {
		c    *driver.JobLimitCandidate
		rank int
	}
	var cands []cand
	perGroup := map[key]int{}
	errEnough := errors.New("enough")
	err = e.query(ctx, `SELECT id, kind, args FROM `+qualify(p.Schema)+`river_job `+where+` ORDER BY priority, scheduled_at, id`,
		args, func(r *sql.Rows) error {
			var c driver.JobLimitCandidate
			var jobArgs string
			if err := r.Scan(&c.ID, &c.Kind, &jobArgs); err != nil {
				return err
			}
			c.Part = argsPart([]byte(jobArgs), p.Keys)
			k := key{c.Kind, strings.Join(c.Part, "\x00")}
			if p.PerGroup > 0 && perGroup[k] >= p.PerGroup {
				return nil
			}
			perGroup[k]++
			cands = append(cands, cand{&c, perGroup[k]})
			if p.FirstPerGroup <= 0 && len(cands) >= p.Candidates {
				return errEnough
			}
			return nil
		})
	if errors.Is(err, errEnough) {
		err = nil
	}
	if p.FirstPerGroup > 0 {
		late := func(c cand) int {
			if c.rank > p.FirstPerGroup {
				return 1
			}
			return 0
		}
		slices.SortStableFunc(cands, func(a, b cand) int { return late(a) - late(b) })
	}
	for _, c := range cands[:min(len(cands), p.Candidates)] {
		res.Available = append(res.Available, c.c)
	}
	return res, err
}

// argsPart is a job's part: for each key, the JSON text of its args'
// value in Postgres' jsonb text form, "" for a missing key or null, so
// that parts read the same on every driver.
func argsPart(args []byte, keys []string) []string {
	part := make([]string, len(keys))
	if len(keys) == 0 {
		return part
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(args, &m) != nil {
		return part
	}
	for i, k := range keys {
		raw, ok := m[k]
		if !ok {
			continue
		}
		var v any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if d.Decode(&v) != nil || v == nil {
			continue
		}
		part[i] = jsonbText(v)
	}
	return part
}

// jsonbText formats a decoded JSON value as Postgres prints jsonb: ", "
// and ": " separators, object keys ordered by length then bytes.
func jsonbText(v any) string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if len(keys[i]) != len(keys[j]) {
				return len(keys[i]) < len(keys[j])
			}
			return keys[i] < keys[j]
		})
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = jsonString(k) + ": " + jsonbText(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = jsonbText(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case string:
		return jsonString(x)
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "true"
		}
		return "false"
	case nil:
		return "null"
	}
	return fmt.Sprint(v)
}

// jsonString quotes a string as JSON without Go's HTML escaping.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}
