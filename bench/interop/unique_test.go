package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/millracetype"
)

// taggedArgs picks its unique fields with River's `river:"unique"` tag,
// in a nested struct and an embedded one too.
type taggedArgs struct {
	Customer string       `json:"customer" river:"unique"`
	Note     string       `json:"note"`
	Nested   taggedNested `json:"nested"`
	Optional string       `json:"optional,omitempty" river:"unique"`
	TaggedEmbedded
}

type taggedNested struct {
	Y string `json:"y" river:"unique"`
	Z int    `json:"z"`
}

// TaggedEmbedded is embedded in taggedArgs (exported, so encoding/json
// flattens its fields).
type TaggedEmbedded struct {
	E string `json:"e" river:"unique"`
}

func (taggedArgs) Kind() string { return "interop_tagged" }

// rawArgs encodes as whatever JSON it holds: keys out of order, keys that
// JSON must escape, HTML characters.
type rawArgs struct{ raw string }

func (rawArgs) Kind() string                   { return "interop_raw" }
func (a rawArgs) MarshalJSON() ([]byte, error) { return []byte(a.raw), nil }

type kindAArgs struct {
	Ref string `json:"ref"`
}

func (kindAArgs) Kind() string { return "interop_kind_a" }

type kindBArgs struct {
	Ref string `json:"ref"`
}

func (kindBArgs) Kind() string { return "interop_kind_b" }

// uniqueCase is a pair of inserts that River's rules make duplicates.
type uniqueCase struct {
	name          string
	first, second interface{ Kind() string }
	byArgs        bool
	byQueue       bool
	byPeriod      time.Duration
	byState       []string
	excludeKind   bool
	queue         string
	// scheduledAt of the first and second insert (zero: none)
	at1, at2 time.Time
}

func uniqueCases() []uniqueCase {
	// Two times in one hour, three hours ahead.
	hour := time.Now().Add(3 * time.Hour).Truncate(time.Hour)
	// A Wednesday and the Thursday after it: one week when weeks are
	// counted from year 1 (Mondays), as Go's Truncate and River count them;
	// two weeks if counted from the Unix epoch (a Thursday).
	wed := time.Date(2031, 1, 8, 12, 0, 0, 0, time.UTC)
	return []uniqueCase{
		{name: "by args", first: interopArgs{Name: "u-args", Count: 1, Labels: []string{"b", "a"}, Inner: innerArgs{A: "<&>", B: 2}},
			second: interopArgs{Name: "u-args", Count: 1, Labels: []string{"b", "a"}, Inner: innerArgs{A: "<&>", B: 2}}, byArgs: true},
		{name: "by args and queue", first: interopArgs{Name: "u-queue"}, second: interopArgs{Name: "u-queue"},
			byArgs: true, byQueue: true, queue: "other_queue"},
		{name: "by hour", first: interopArgs{Name: "u-hour"}, second: interopArgs{Name: "u-hour"}, byArgs: true,
			byPeriod: time.Hour, at1: hour.Add(10 * time.Minute), at2: hour.Add(50 * time.Minute)},
		{name: "by week", first: kindAArgs{Ref: "u-week"}, second: kindAArgs{Ref: "u-week"},
			byPeriod: 7 * 24 * time.Hour, at1: wed, at2: wed.Add(24 * time.Hour)},
		{name: "by state only", first: kindBArgs{Ref: "one"}, second: kindBArgs{Ref: "two"},
			byState: []string{"available", "completed", "pending", "running", "retryable", "scheduled"}},
		{name: "every state", first: interopArgs{Name: "u-states"}, second: interopArgs{Name: "u-states"}, byArgs: true,
			byState: []string{"available", "cancelled", "completed", "discarded", "pending", "retryable", "running", "scheduled"}},
		{name: "tagged fields", first: taggedArgs{Customer: "c1", Note: "first", Nested: taggedNested{Y: "y", Z: 1}, TaggedEmbedded: TaggedEmbedded{E: "e"}},
			second: taggedArgs{Customer: "c1", Note: "second", Nested: taggedNested{Y: "y", Z: 2}, TaggedEmbedded: TaggedEmbedded{E: "e"}}, byArgs: true},
		{name: "tagged fields all absent", first: taggedArgs{Note: "x"}, second: taggedArgs{Note: "y"}, byArgs: true,
			queue: "absent_queue"},
		{name: "odd keys", first: rawArgs{`{"zz":1,"a<b":"x&y","é":true,"a":{"c":1,"b":2},"tab\t":null,"q\"":[1, 2]}`},
			second: rawArgs{`{"q\"":[1,2],"tab\t":null,"a":{"c":1,"b":2},"é":true,"a<b":"x&y","zz":1}`}, byArgs: true},
		{name: "exclude kind", first: kindAArgs{Ref: "shared"}, second: kindBArgs{Ref: "shared"}, byArgs: true, excludeKind: true},
	}
}

func (c uniqueCase) riverOpts(at time.Time) *river.InsertOpts {
	opts := &river.InsertOpts{Queue: c.queue, ScheduledAt: at, UniqueOpts: river.UniqueOpts{
		ByArgs: c.byArgs, ByQueue: c.byQueue, ByPeriod: c.byPeriod, ExcludeKind: c.excludeKind}}
	for _, s := range c.byState {
		opts.UniqueOpts.ByState = append(opts.UniqueOpts.ByState, rivertype.JobState(s))
	}
	return opts
}

func (c uniqueCase) millraceOpts(at time.Time) *client.InsertOpts {
	opts := &client.InsertOpts{Queue: c.queue, ScheduledAt: at, UniqueOpts: client.UniqueOpts{
		ByArgs: c.byArgs, ByQueue: c.byQueue, ByPeriod: c.byPeriod, ExcludeKind: c.excludeKind}}
	for _, s := range c.byState {
		opts.UniqueOpts.ByState = append(opts.UniqueOpts.ByState, millracetype.JobState(s))
	}
	return opts
}

// TestUniqueKeysCollide inserts each pair once River first, millrace
// second, and once the other way round (in another schema): the second
// insert must always find the first job, and both systems must write the
// same unique_key and unique_states.
func TestUniqueKeysCollide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, riverFirst := setup(t, true)
	_, millraceFirst := setup(t, false)
	rcA, mcA := newRiverClient(t, riverFirst, nil), newMillraceClient(t, riverFirst, nil)
	rcB, mcB := newRiverClient(t, millraceFirst, nil), newMillraceClient(t, millraceFirst, nil)
	for _, c := range uniqueCases() {
		t.Run(c.name, func(t *testing.T) {
			rRes, err := rcA.Insert(ctx, c.first, c.riverOpts(c.at1))
			if err != nil {
				t.Fatalf("River insert: %v", err)
			}
			mDup, err := mcA.Insert(ctx, c.second, c.millraceOpts(c.at2))
			if err != nil {
				t.Fatalf("millrace insert after River's: %v", err)
			}
			if !mDup.UniqueSkippedAsDuplicate || mDup.Job.ID != rRes.Job.ID {
				t.Errorf("after River inserted job %d (unique_key %x), millrace inserted job %d (unique_key %x) duplicate=%v; want River's job back as a duplicate",
					rRes.Job.ID, rRes.Job.UniqueKey, mDup.Job.ID, mDup.Job.UniqueKey, mDup.UniqueSkippedAsDuplicate)
			}

			mRes, err := mcB.Insert(ctx, c.first, c.millraceOpts(c.at1))
			if err != nil {
				t.Fatalf("millrace insert: %v", err)
			}
			rDup, err := rcB.Insert(ctx, c.second, c.riverOpts(c.at2))
			if err != nil {
				t.Fatalf("River insert after millrace's: %v", err)
			}
			if !rDup.UniqueSkippedAsDuplicate || rDup.Job.ID != mRes.Job.ID {
				t.Errorf("after millrace inserted job %d (unique_key %x), River inserted job %d (unique_key %x) duplicate=%v; want millrace's job back as a duplicate",
					mRes.Job.ID, mRes.Job.UniqueKey, rDup.Job.ID, rDup.Job.UniqueKey, rDup.UniqueSkippedAsDuplicate)
			}

			// The columns each system wrote for the first insert.
			if !bytes.Equal(rRes.Job.UniqueKey, mRes.Job.UniqueKey) {
				t.Errorf("unique_key: River %x, millrace %x", rRes.Job.UniqueKey, mRes.Job.UniqueKey)
			}
			if r, m := riverStates(rRes.Job.UniqueStates), millraceStates(mRes.Job.UniqueStates); fmt.Sprint(r) != fmt.Sprint(m) {
				t.Errorf("unique_states: River %v, millrace %v", r, m)
			}
			if rRes.Job.State != rivertype.JobState(mRes.Job.State) && c.at1.IsZero() {
				t.Errorf("initial state: River %s, millrace %s", rRes.Job.State, mRes.Job.State)
			}
		})
	}
	// Nothing but the first insert of each pair was written.
	for _, schema := range []string{riverFirst, millraceFirst} {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+jobTable(schema)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := len(uniqueCases()); n != want {
			t.Errorf("schema %s holds %d jobs, want %d (one per pair)", schema, n, want)
		}
	}
}

// TestDebouncedRowIsRiversDuplicate: a row that millrace inserts and then
// replaces (new args, a run time moved later) keeps River's unique key, so
// River's insert of the same unique job finds it as a duplicate; and a row
// River inserted is replaced by millrace's debounced insert and still
// found by River afterwards. The args type's unique fields are tagged, so
// the untagged Note changes without changing the key.
func TestDebouncedRowIsRiversDuplicate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, schema := setup(t, true)
	rc, mc := newRiverClient(t, schema, nil), newMillraceClient(t, schema, nil)
	const debounce = 10 * time.Second
	debounced := &client.InsertOpts{UniqueOpts: client.UniqueOpts{ByArgs: true},
		Replace: client.ReplaceOpts{Args: true, Debounce: debounce}}
	riverUnique := &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
	args := func(customer, note string) taggedArgs {
		return taggedArgs{Customer: customer, Note: note, Nested: taggedNested{Y: "y"}}
	}

	// millrace first: inserted, then replaced; River's insert is a duplicate.
	first, err := mc.Insert(ctx, args("m", "one"), debounced)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	second, err := mc.Insert(ctx, args("m", "two"), debounced)
	if err != nil {
		t.Fatal(err)
	}
	if first.UniqueSkippedAsDuplicate || first.UniqueReplaced || !second.UniqueReplaced || second.Job.ID != first.Job.ID {
		t.Fatalf("millrace inserts: first %+v, second replaced %v job %d", first, second.UniqueReplaced, second.Job.ID)
	}
	if second.Job.ScheduledAt.Before(before.Add(debounce)) || second.Job.State != millracetype.JobStateScheduled {
		t.Fatalf("debounced job: scheduled_at %s state %s, want scheduled at least %s after the insert", second.Job.ScheduledAt, second.Job.State, debounce)
	}
	rDup, err := rc.Insert(ctx, args("m", "river"), riverUnique)
	if err != nil {
		t.Fatal(err)
	}
	if !rDup.UniqueSkippedAsDuplicate || rDup.Job.ID != first.Job.ID {
		t.Errorf("River insert after millrace's debounced job %d: job %d duplicate=%v, want millrace's job as a duplicate",
			first.Job.ID, rDup.Job.ID, rDup.UniqueSkippedAsDuplicate)
	}
	var got taggedArgs
	if err := json.Unmarshal(rDup.Job.EncodedArgs, &got); err != nil {
		t.Fatal(err)
	}
	if got.Note != "two" {
		t.Errorf("River's duplicate returned note %q, want millrace's replacement \"two\"", got.Note)
	}

	// River first: millrace's debounced insert replaces River's row, which
	// River then finds again.
	rFirst, err := rc.Insert(ctx, args("r", "river"), riverUnique)
	if err != nil {
		t.Fatal(err)
	}
	mRep, err := mc.Insert(ctx, args("r", "millrace"), debounced)
	if err != nil {
		t.Fatal(err)
	}
	if !mRep.UniqueReplaced || mRep.Job.ID != rFirst.Job.ID || mRep.Job.State != millracetype.JobStateScheduled {
		t.Fatalf("millrace's debounced insert after River's job %d: job %d replaced %v state %s", rFirst.Job.ID, mRep.Job.ID, mRep.UniqueReplaced, mRep.Job.State)
	}
	rAgain, err := rc.Insert(ctx, args("r", "river again"), riverUnique)
	if err != nil {
		t.Fatal(err)
	}
	if !rAgain.UniqueSkippedAsDuplicate || rAgain.Job.ID != rFirst.Job.ID {
		t.Errorf("River insert after millrace replaced its job %d: job %d duplicate=%v", rFirst.Job.ID, rAgain.Job.ID, rAgain.UniqueSkippedAsDuplicate)
	}
}
