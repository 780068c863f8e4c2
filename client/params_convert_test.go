package client

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// The public parameter types are turned into the driver's at one point
// each (listParams, toDriverParams), field by field. These tests fail when
// a field is added on either side without being carried over: every field
// of the public type must be mapped, and every mapped driver field must
// come out equal to what went in.

// fieldNames lists a struct type's field names.
func fieldNames(v any) []string {
	t := reflect.TypeOf(v)
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = t.Field(i).Name
	}
	return names
}

// fieldMapProblems says what is wrong with a conversion's field map: a
// field of the public type not in the map, a mapping to a driver field that
// does not exist, a driver field neither mapped nor listed in driverOnly.
func fieldMapProblems(public, drv any, fields map[string]string, driverOnly []string) []string {
	var problems []string
	for _, name := range fieldNames(public) {
		if _, ok := fields[name]; !ok {
			problems = append(problems, fmt.Sprintf("%T.%s is not carried over to %T: update the conversion and this test", public, name, drv))
		}
	}
	driverFields := fieldNames(drv)
	mapped := map[string]bool{}
	for pub, d := range fields {
		if d == "" {
			continue // deliberately not stored (documented in the map)
		}
		if !slices.Contains(driverFields, d) {
			problems = append(problems, fmt.Sprintf("%T.%s maps to %T.%s, which does not exist", public, pub, drv, d))
		}
		mapped[d] = true
	}
	for _, d := range driverFields {
		if !mapped[d] && !slices.Contains(driverOnly, d) {
			problems = append(problems, fmt.Sprintf("%T.%s is set by nothing in the conversion: update it and this test", drv, d))
		}
	}
	return problems
}

func checkFieldMap(t *testing.T, public, drv any, fields map[string]string, driverOnly []string) {
	t.Helper()
	for _, p := range fieldMapProblems(public, drv, fields, driverOnly) {
		t.Error(p)
	}
}

func TestFieldMapProblemsCatchesDrift(t *testing.T) {
	type pub struct{ A, B int }
	type drv struct{ A, C int }
	got := fieldMapProblems(pub{}, drv{}, map[string]string{"A": "A"}, nil)
	if len(got) != 2 {
		t.Fatalf("an unmapped public field and a driver field set by nothing gave %d problems: %q", len(got), got)
	}
	if got := fieldMapProblems(pub{}, drv{}, map[string]string{"A": "A", "B": "D"}, []string{"C"}); len(got) != 1 {
		t.Fatalf("a mapping to a missing driver field gave %q", got)
	}
}

func TestJobListParamsConversion(t *testing.T) {
	t.Parallel()
	checkFieldMap(t, JobListParams{}, driver.JobListParams{}, map[string]string{
		"IDs": "IDs", "Kinds": "Kinds", "Queues": "Queues", "States": "States", "Priorities": "Priorities",
		"Metadata": "MetadataContains", "OrderBy": "OrderBy", "Desc": "Desc", "After": "AfterID", "Limit": "Limit",
		"TagsAny": "TagsAny", "TagsAll": "TagsAll", "CreatedAt": "CreatedAt", "ScheduledAt": "ScheduledAt",
		"AttemptedAt": "AttemptedAt", "FinalizedAt": "FinalizedAt",
	}, []string{"Schema", "AfterValue"})

	from, before := time.Unix(1000, 0), time.Unix(2000, 0)
	rng := TimeRange{From: &from, Before: &before}
	value := time.Unix(1500, 0)
	in := &JobListParams{IDs: []int64{7}, Kinds: []string{"k"}, Queues: []string{"q"},
		States: []millracetype.JobState{millracetype.JobStateAvailable}, Priorities: []int{2}, Metadata: []byte(`{"a":1}`),
		OrderBy: JobListOrderByScheduledAt, Desc: true, After: &JobListCursor{ID: 9, OrderBy: JobListOrderByScheduledAt, Value: &value},
		Limit: 50, TagsAny: []string{"t1"}, TagsAll: []string{"t2"}, CreatedAt: rng, ScheduledAt: rng, AttemptedAt: rng, FinalizedAt: rng}
	out, err := listParams("s", in, "list")
	if err != nil {
		t.Fatal(err)
	}
	want := &driver.JobListParams{Schema: "s", IDs: in.IDs, Kinds: in.Kinds, Queues: in.Queues, States: in.States,
		Priorities: in.Priorities, MetadataContains: in.Metadata, OrderBy: in.OrderBy, Desc: true, AfterID: &in.After.ID,
		AfterValue: &value, Limit: 50, TagsAny: in.TagsAny, TagsAll: in.TagsAll, CreatedAt: rng, ScheduledAt: rng,
		AttemptedAt: rng, FinalizedAt: rng}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("listParams:\n got  %+v\n want %+v", out, want)
	}
}

func TestJobInsertParamsConversion(t *testing.T) {
	t.Parallel()
	checkFieldMap(t, JobInsertParams{}, driver.JobInsertParams{}, map[string]string{
		"Kind": "Kind", "EncodedArgs": "Args", "Queue": "Queue", "Priority": "Priority", "MaxAttempts": "MaxAttempts",
		"CreatedAt": "CreatedAt", "ScheduledAt": "ScheduledAt", "State": "State", "Tags": "Tags", "Metadata": "Metadata",
		"UniqueKey": "UniqueKey", "UniqueStates": "UniqueStates",
		"ReplaceArgs": "ReplaceArgs", "ReplaceScheduledAt": "ReplaceScheduledAt",
		"Args": "", // the args value, for hooks only: EncodedArgs is what is stored
		// The sequence is written into Metadata and State (finishSequenced)
		// and appended by a driver call of its own (SequenceAppend).
		"Sequence": "",
	}, nil)

	created, scheduled := time.Unix(1000, 0), time.Unix(2000, 0)
	in := &JobInsertParams{Kind: "k", EncodedArgs: []byte(`{"n":1}`), Queue: "q", Priority: 3, MaxAttempts: 4,
		CreatedAt: created, ScheduledAt: scheduled, State: millracetype.JobStateScheduled, Tags: []string{"t"},
		Metadata: []byte(`{"m":1}`), UniqueKey: []byte("key"), UniqueStates: 0x0f, ReplaceArgs: true,
		ReplaceScheduledAt: true, Args: noopArgs{N: 1}}
	out := toDriverParams([]*JobInsertParams{in})
	want := &driver.JobInsertParams{Args: in.EncodedArgs, CreatedAt: &created, Kind: "k", MaxAttempts: 4,
		Metadata: in.Metadata, Priority: 3, Queue: "q", ScheduledAt: &scheduled, State: millracetype.JobStateScheduled,
		Tags: in.Tags, UniqueKey: in.UniqueKey, UniqueStates: 0x0f, ReplaceArgs: true, ReplaceScheduledAt: true}
	if len(out) != 1 || !reflect.DeepEqual(out[0], want) {
		t.Fatalf("toDriverParams:\n got  %+v\n want %+v", out[0], want)
	}
}
