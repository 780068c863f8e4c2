package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/millrace/millrace/driver"
)

// Fairness within a queue. Partitions are stored with args in Postgres'
// jsonb text form (jsonbText), listed in Postgres' (text, jsonb) order
// (compareJSONB), and matched against jobs in Go.

// decodeJSON decodes JSON keeping numbers exact.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// fairArgs is a partition's args as stored: its object in jsonb text form
// ({} when empty).
func fairArgs(b []byte) (string, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return "{}", nil
	}
	v, err := decodeJSON(b)
	if err != nil {
		return "", fmt.Errorf("partition args %q: %w", b, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return "", fmt.Errorf("partition args %q: not a JSON object", b)
	}
	return jsonbText(v), nil
}

// fairPart is a partition as a job matcher: its kind ("" for any), the
// values its jobs' args hold, and the keys they lack (or hold null).
type fairPart struct {
	kind    string
	present map[string]any
	missing []string
}

func newFairPart(kind string, args []byte) (*fairPart, error) {
	s, err := fairArgs(args)
	if err != nil {
		return nil, err
	}
	v, _ := decodeJSON([]byte(s))
	p := &fairPart{kind: kind, present: map[string]any{}}
	for k, x := range v.(map[string]any) {
		if x == nil {
			p.missing = append(p.missing, k)
		} else {
			p.present[k] = x
		}
	}
	return p, nil
}

// matches reports whether a job of kind with args is in the partition
// (Postgres: args @> the present values, and none of the missing keys in
// jsonb_strip_nulls(args)).
func (p *fairPart) matches(kind string, args []byte) bool {
	if p.kind != "" && p.kind != kind {
		return false
	}
	v, err := decodeJSON(args)
	if err != nil {
		return false
	}
	obj, isObj := v.(map[string]any)
	if len(p.present) > 0 && !contains(normalizeNumbers(v), normalizeNumbers(p.present)) {
		return false
	}
	if isObj {
		for _, k := range p.missing {
			if x, ok := obj[k]; ok && x != nil {
				return false
			}
		}
	}
	return true
}

// normalizeNumbers turns json.Numbers into exact rationals' strings so that
// contains compares 1 and 1.0 as equal, as jsonb does.
func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalizeNumbers(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = normalizeNumbers(e)
		}
		return a
	case json.Number:
		if r, ok := new(big.Rat).SetString(x.String()); ok {
			return jsonNumber(r.RatString())
		}
		return jsonNumber(x.String())
	}
	return v
}

// jsonNumber is a normalized JSON number.
type jsonNumber string

// jsonbRank is Postgres' order of JSON types: Object > Array > Boolean >
// Number > String > Null.
func jsonbRank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case string:
		return 1
	case json.Number:
		return 2
	case bool:
		return 3
	case []any:
		return 4
	case map[string]any:
		return 5
	}
	return 0
}

// jsonbKeyOrder is the order of an object's keys in jsonb: by length,
// then bytes.
func jsonbKeyOrder(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// compareJSONB compares two decoded JSON values as Postgres orders jsonb
// (strings by bytes, where Postgres uses the database's collation).
func compareJSONB(a, b any) int {
	if ra, rb := jsonbRank(a), jsonbRank(b); ra != rb {
		return ra - rb
	}
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
	case json.Number:
		ra, _ := new(big.Rat).SetString(x.String())
		rb, _ := new(big.Rat).SetString(b.(json.Number).String())
		if ra == nil || rb == nil {
			return strings.Compare(x.String(), b.(json.Number).String())
		}
		return ra.Cmp(rb)
	case bool:
		switch y := b.(bool); {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case []any:
		y := b.([]any)
		if len(x) != len(y) {
			return len(x) - len(y)
		}
		for i := range x {
			if c := compareJSONB(x[i], y[i]); c != 0 {
				return c
			}
		}
		return 0
	case map[string]any:
		y := b.(map[string]any)
		if len(x) != len(y) {
			return len(x) - len(y)
		}
		kx, ky := sortedKeys(x), sortedKeys(y)
		for i := range kx {
			if c := jsonbKeyOrder(kx[i], ky[i]); c != 0 {
				return c
			}
			if c := compareJSONB(x[kx[i]], y[ky[i]]); c != 0 {
				return c
			}
		}
		return 0
	}
	return 0
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, jsonbKeyOrder)
	return keys
}

// comparePartitions orders partitions by kind, then args as jsonb.
func comparePartitions(a, b *driver.FairPartition) int {
	if c := strings.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	va, _ := decodeJSON(a.Args)
	vb, _ := decodeJSON(b.Args)
	return compareJSONB(va, vb)
}

func (e *executor) loadPartitions(ctx context.Context, schema, queue string) ([]*driver.FairPartition, error) {
	var out []*driver.FairPartition
	err := e.query(ctx, `SELECT kind, args, empty_since FROM `+qualify(schema)+`millrace_fair_partition WHERE queue = ?`,
		[]any{queue}, func(r *sql.Rows) error {
			var fp driver.FairPartition
			var args string
			var since sql.NullString
			if err := r.Scan(&fp.Kind, &args, &since); err != nil {
				return err
			}
			fp.Args = []byte(args)
			var err error
			fp.EmptySince, err = parseTimePtr(since)
			out = append(out, &fp)
			return err
		})
	slices.SortFunc(out, comparePartitions)
	return out, err
}

func (e *executor) FairPartitionList(ctx context.Context, p *driver.FairPartitionListParams) ([]*driver.FairPartition, error) {
	if p.Limit <= 0 {
		return nil, nil
	}
	var after *driver.FairPartition
	if p.After != nil {
		args, err := fairArgs(p.After.Args)
		if err != nil {
			return nil, err
		}
		after = &driver.FairPartition{Kind: p.After.Kind, Args: []byte(args)}
	}
	all, err := e.loadPartitions(ctx, p.Schema, p.Queue)
	if err != nil {
		return nil, err
	}
	var out []*driver.FairPartition
	for _, fp := range all {
		if len(out) == p.Limit {
			break
		}
		if after != nil && comparePartitions(fp, after) <= 0 {
			continue
		}
		if len(p.Kinds) > 0 && fp.Kind != "" && !slices.Contains(p.Kinds, fp.Kind) {
			continue
		}
		out = append(out, fp)
	}
	return out, nil
}

// partitionOf is a job's partition args: each key's value, null for a key
// missing or null (or args that are not an object), in jsonb text form.
func partitionOf(args []byte, keys []string) string {
	obj := map[string]any{}
	v, err := decodeJSON(args)
	m, isObj := v.(map[string]any)
	for _, k := range keys {
		obj[k] = nil
		if err == nil && isObj {
			obj[k] = m[k]
		}
	}
	return jsonbText(obj)
}

// FairPartitionDiscover implements driver.Executor. A partition whose
// args' text is over 1,000 bytes is not registered (as on Postgres).
func (e *executor) FairPartitionDiscover(ctx context.Context, p *driver.FairPartitionDiscoverParams) ([]*driver.FairPartition, error) {
	if p.Newest <= 0 && len(p.IDs) == 0 {
		return nil, nil
	}
	type src struct{ kind, args string }
	var jobs []src
	read := func(r *sql.Rows) error {
		var s src
		err := r.Scan(&s.kind, &s.args)
		jobs = append(jobs, s)
		return err
	}
	var out []*driver.FairPartition
	err := e.inTx(ctx, func(tx *executor) error {
		if p.Newest > 0 {
			if err := tx.query(ctx, `SELECT kind, args FROM `+qualify(p.Schema)+`river_job WHERE state = 'available' AND queue = ?
				ORDER BY priority DESC, scheduled_at DESC, id DESC LIMIT ?`, []any{p.Queue, p.Newest}, read); err != nil {
				return err
			}
		}
		if len(p.IDs) > 0 {
			args := []any{p.Queue}
			for _, id := range p.IDs {
				args = append(args, id)
			}
			if err := tx.query(ctx, `SELECT kind, args FROM `+qualify(p.Schema)+`river_job WHERE queue = ? AND id IN (`+
				placeholders(len(p.IDs))+`) ORDER BY id`, args, read); err != nil {
				return err
			}
		}
		seen := map[src]bool{}
		var added []*driver.FairPartition
		for _, j := range jobs {
			part := src{args: partitionOf([]byte(j.args), p.Keys)}
			if p.ByKind {
				part.kind = j.kind
			}
			if seen[part] || len(part.args) > 1000 {
				continue
			}
			seen[part] = true
			n, err := tx.exec(ctx, `INSERT INTO `+qualify(p.Schema)+`millrace_fair_partition (queue, kind, args, created_at)
				VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, p.Queue, part.kind, part.args, fmtTime(e.now()))
			if err != nil {
				return err
			}
			if n > 0 {
				added = append(added, &driver.FairPartition{Kind: part.kind, Args: []byte(part.args)})
			}
		}
		out = added
		return nil
	})
	return out, err
}

// JobFairLock implements driver.Executor. It locks nothing: called in one
// of the driver's transactions, which hold the database's write lock, no
// other fetch runs until it ends. Each share reads its partition's due
// jobs in fetch order; then jobs in plain fetch order up to Max; a job
// two shares both took is returned once.
func (e *executor) JobFairLock(ctx context.Context, p *driver.JobFairLockParams) ([]*driver.FairLocked, error) {
	if len(p.Shares) > driver.MaxFairShares {
		return nil, fmt.Errorf("fair lock: %d shares, at most %d", len(p.Shares), driver.MaxFairShares)
	}
	if p.Max <= 0 {
		return nil, nil
	}
	parts := make([]*fairPart, len(p.Shares))
	for i, s := range p.Shares {
		if s == nil {
			return nil, fmt.Errorf("fair lock: share %d is nil", i)
		}
		fp, err := newFairPart(s.Kind, s.Args)
		if err != nil {
			return nil, fmt.Errorf("fair lock: %w", err)
		}
		parts[i] = fp
	}
	where := `WHERE state = 'available' AND queue = ? AND scheduled_at <= ?`
	args := []any{p.Queue, fmtTime(e.now())}
	if len(p.Kinds) > 0 {
		where += ` AND kind IN (` + placeholders(len(p.Kinds)) + `)`
		for _, k := range p.Kinds {
			args = append(args, k)
		}
	}
	type due struct {
		id       int64
		priority int
		kind     string
		args     []byte
	}
	var jobs []due
	if err := e.query(ctx, `SELECT id, priority, kind, args FROM `+qualify(p.Schema)+`river_job `+where+
		` ORDER BY priority, scheduled_at, id`, args, func(r *sql.Rows) error {
		var d due
		var a string
		err := r.Scan(&d.id, &d.priority, &d.kind, &a)
		d.args = []byte(a)
		jobs = append(jobs, d)
		return err
	}); err != nil {
		return nil, err
	}
	var out []*driver.FairLocked
	seen := map[int64]bool{}
	picked := 0
	for i, fp := range parts {
		rank := 0
		for _, j := range jobs {
			if rank >= p.Shares[i].Max {
				break
			}
			if !fp.matches(j.kind, j.args) {
				continue
			}
			picked++
			if !seen[j.id] {
				seen[j.id] = true
				out = append(out, &driver.FairLocked{ID: j.id, Priority: j.priority, Share: i, Rank: rank})
			}
			rank++
		}
	}
	rank := 0
	for _, j := range jobs {
		if rank >= p.Max-picked {
			break
		}
		if seen[j.id] {
			continue
		}
		seen[j.id] = true
		out = append(out, &driver.FairLocked{ID: j.id, Priority: j.priority, Share: -1, Rank: rank})
		rank++
	}
	return out, nil
}

// FairPartitionUpdate implements driver.Executor, under the write lock
// (no row to skip).
func (e *executor) FairPartitionUpdate(ctx context.Context, p *driver.FairPartitionUpdateParams) (int, error) {
	if len(p.Found) == 0 && len(p.Empty) == 0 {
		return 0, nil
	}
	deleted := 0
	err := e.inTx(ctx, func(tx *executor) error {
		now := e.now()
		table := qualify(p.Schema) + "millrace_fair_partition"
		for _, fp := range p.Found {
			args, err := fairArgs(fp.Args)
			if err != nil {
				return err
			}
			if _, err := tx.exec(ctx, `UPDATE `+table+` SET empty_since = NULL WHERE queue = ? AND kind = ? AND args = ?`,
				p.Queue, fp.Kind, args); err != nil {
				return err
			}
		}
		for _, fp := range p.Empty {
			if slices.ContainsFunc(p.Found, func(f *driver.FairPartition) bool { return comparePartitions(f, fp) == 0 }) {
				continue
			}
			args, err := fairArgs(fp.Args)
			if err != nil {
				return err
			}
			var since sql.NullString
			ok, err := tx.queryOne(ctx, `SELECT empty_since FROM `+table+` WHERE queue = ? AND kind = ? AND args = ?`,
				[]any{p.Queue, fp.Kind, args}, &since)
			if err != nil || !ok {
				return err
			}
			if !since.Valid {
				if _, err := tx.exec(ctx, `UPDATE `+table+` SET empty_since = ? WHERE queue = ? AND kind = ? AND args = ?`,
					fmtTime(now), p.Queue, fp.Kind, args); err != nil {
					return err
				}
				continue
			}
			was, err := parseTime(since.String)
			if err != nil {
				return err
			}
			if !was.Before(now.Add(-p.Grace)) {
				continue
			}
			part, err := newFairPart(fp.Kind, []byte(args))
			if err != nil {
				return err
			}
			live := false
			errFound := errors.New("found")
			err = tx.query(ctx, `SELECT kind, args FROM `+qualify(p.Schema)+`river_job WHERE queue = ?
				AND state IN ('available', 'scheduled', 'retryable', 'running', 'pending')`, []any{p.Queue}, func(r *sql.Rows) error {
				var kind, jobArgs string
				if err := r.Scan(&kind, &jobArgs); err != nil {
					return err
				}
				if part.matches(kind, []byte(jobArgs)) {
					live = true
					return errFound
				}
				return nil
			})
			if err != nil && !errors.Is(err, errFound) {
				return err
			}
			if live {
				continue
			}
			n, err := tx.exec(ctx, `DELETE FROM `+table+` WHERE queue = ? AND kind = ? AND args = ?`, p.Queue, fp.Kind, args)
			if err != nil {
				return err
			}
			deleted += int(n)
		}
		return nil
	})
	return deleted, err
}
