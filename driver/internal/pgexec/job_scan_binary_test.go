package pgexec

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// TestBinaryScanMatchesGeneric: rows of every shape decode from the binary
// format exactly as pgx's generic scan decodes them (scanJob), and a text
// result (simple protocol) falls back to the generic scan.
func TestBinaryScanMatchesGeneric(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema, pool, drv := migratedSchema(t)
	exec := drv.GetExecutor()
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	for _, p := range []*driver.JobInsertFullParams{
		{Kind: "plain", Queue: "q", State: millracetype.JobStateAvailable},
		{Kind: "full", Queue: "other", Args: []byte(`{"s":"é ☃ \u00e9x","n":[1,2.5,null]}`), Metadata: []byte(`{"m":{"deep":true}}`),
			Attempt: 3, AttemptedAt: at("2026-01-02T03:04:05.123456Z"), AttemptedBy: []string{"a", "client_b", "a"},
			CreatedAt: at("1999-12-31T23:59:59.999999Z"), FinalizedAt: at("2031-05-06T07:08:09Z"),
			Errors: []millracetype.AttemptError{{At: *at("2026-01-01T00:00:00.5Z"), Attempt: 1, Error: "boom", Trace: "stack"},
				{At: *at("2026-01-01T00:00:01Z"), Attempt: 2, Error: "again"}},
			MaxAttempts: 7, Priority: 4, ScheduledAt: at("1900-01-01T00:00:00Z"), State: millracetype.JobStateCompleted,
			Tags: []string{"t1", "a tag with spaces", ""}, UniqueKey: []byte{0, 1, 2, 255}, UniqueStates: 0b1111_0101},
		{Kind: "far", Queue: "q", ScheduledAt: at("2262-04-11T23:47:16.854775Z"), State: millracetype.JobStateScheduled,
			UniqueKey: []byte{}, UniqueStates: 1},
		{Kind: "empty", Queue: "q", Args: []byte(`{}`), AttemptedBy: []string{}, State: millracetype.JobStateRunning, Attempt: 1,
			AttemptedAt: at("2026-06-01T00:00:00Z")},
	} {
		p.Schema = schema
		if _, err := exec.JobInsertFull(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// An errors element that is not an attempt error, and one that is not
	// an object at all: kept as entries saying so, by both scans.
	if _, err := pool.Exec(ctx, `UPDATE `+pgx.Identifier{schema, "river_job"}.Sanitize()+
		` SET errors = ARRAY['{"at":"not a time"}'::jsonb, '"just a string"'::jsonb] WHERE kind = 'plain'`); err != nil {
		t.Fatal(err)
	}
	sql := "SELECT " + jobCols + " FROM " + pgx.Identifier{schema, "river_job"}.Sanitize() + " ORDER BY id"
	read := func(mode pgx.QueryExecMode, collect func(pgx.Rows) ([]*millracetype.JobRow, error)) ([]*millracetype.JobRow, bool) {
		t.Helper()
		rows, err := pool.Query(ctx, sql, mode)
		if err != nil {
			t.Fatal(err)
		}
		var binary bool
		jobs, err := collect(&layoutSpy{Rows: rows, binary: &binary})
		if err != nil {
			t.Fatal(err)
		}
		return jobs, binary
	}
	generic, _ := read(pgx.QueryExecModeCacheStatement, func(r pgx.Rows) ([]*millracetype.JobRow, error) { return pgx.CollectRows(r, scanJob) })
	if len(generic) != 4 {
		t.Fatalf("%d rows", len(generic))
	}
	if len(generic[0].Errors) != 2 || generic[0].Errors[1].Error == "" {
		t.Fatalf("the generic scan's errors entries: %+v", generic[0].Errors)
	}
	fast, wasBinary := read(pgx.QueryExecModeCacheStatement, collectJobs)
	if !wasBinary {
		t.Fatal("the extended protocol's result did not have the binary layout")
	}
	text, wasBinary := read(pgx.QueryExecModeSimpleProtocol, collectJobs)
	if wasBinary {
		t.Fatal("the simple protocol's result had the binary layout")
	}
	for i := range generic {
		if !reflect.DeepEqual(fast[i], generic[i]) {
			t.Errorf("row %d from the binary format:\n%+v\nfrom the generic scan:\n%+v", i, fast[i], generic[i])
		}
		if !reflect.DeepEqual(text[i], generic[i]) {
			t.Errorf("row %d from text:\n%+v\nfrom the generic scan:\n%+v", i, text[i], generic[i])
		}
	}
	// The slices of a row do not share room: an append to one leaves the
	// others as they were.
	f := fast[1]
	before := string(f.Metadata)
	_ = append(f.Args, 'X', 'X', 'X')
	_ = append(f.AttemptedBy, "intruder")
	if string(f.Metadata) != before || !reflect.DeepEqual(fast[2].AttemptedBy, generic[2].AttemptedBy) ||
		!reflect.DeepEqual(f.Tags, generic[1].Tags) {
		t.Error("an append to one decoded slice changed another")
	}
}

// layoutSpy records whether collectJobs would see the binary layout.
type layoutSpy struct {
	pgx.Rows
	binary *bool
}

func (s *layoutSpy) Next() bool {
	ok := s.Rows.Next()
	if ok {
		*s.binary = binaryLayout(s.Rows.FieldDescriptions())
	}
	return ok
}

// binRow is a valid binary row for the malformed-input checks.
func binRow() [][]byte {
	i8 := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
	i2 := func(v int16) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }
	arr := func(elems ...string) []byte {
		b := binary.BigEndian.AppendUint32(nil, 1)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 25)
		b = binary.BigEndian.AppendUint32(b, uint32(len(elems)))
		b = binary.BigEndian.AppendUint32(b, 1)
		for _, e := range elems {
			b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
			b = append(b, e...)
		}
		return b
	}
	return [][]byte{i8(42), []byte("\x01{}"), i2(1), i8(1), arr("c1"), i8(2), nil, nil, []byte("k"), i2(25),
		[]byte("\x01{}"), i2(1), []byte("q"), i8(3), []byte("running"), arr(), nil, nil}
}

// TestBinaryScanRefusesMalformed: a value that does not fit its type's
// binary format is an error, never a panic or a read past the buffer.
func TestBinaryScanRefusesMalformed(t *testing.T) {
	var arena stringArena
	if _, err := decodeJobRow(binRow(), &arena, false, false); err != nil {
		t.Fatalf("the valid row: %v", err)
	}
	for _, tc := range []struct {
		name string
		col  int
		val  []byte
	}{
		{"short id", 0, []byte{1, 2, 3}},
		{"jsonb version 2", 1, []byte("\x02{}")},
		{"empty jsonb", 10, []byte{}},
		{"long attempt", 2, []byte{0, 0, 1}},
		{"short time", 13, []byte{0}},
		{"infinite time", 5, binary.BigEndian.AppendUint64(nil, 1<<63-1)},
		{"array header cut", 4, []byte{0, 0, 0, 1, 0}},
		{"array of 2 dimensions", 4, append(binary.BigEndian.AppendUint32(nil, 2), make([]byte, 24)...)},
		{"array count past the end", 4, append(binary.BigEndian.AppendUint32(nil, 1), append(make([]byte, 8), 0x7f, 0, 0, 0, 0, 0, 0, 1)...)},
		{"array element past the end", 15, append(binRow()[4][:20:20], 0, 0, 0, 9, 'x')},
		{"NULL kind", 8, nil},
	} {
		row := binRow()
		row[tc.col] = tc.val
		if _, err := decodeJobRow(row, &arena, false, false); !errors.Is(err, errBinaryJob) {
			t.Errorf("%s: %v, want an error wrapping errBinaryJob", tc.name, err)
		}
	}
}

// FuzzBinaryArray: no input makes the array decoder panic or return
// elements outside its input.
func FuzzBinaryArray(f *testing.F) {
	f.Add(binRow()[4])
	f.Add([]byte{})
	f.Add(append(binary.BigEndian.AppendUint32(nil, 1), make([]byte, 16)...))
	f.Fuzz(func(t *testing.T, v []byte) {
		var arena stringArena
		elems, err := binArrayElems(v, nil)
		if err == nil {
			total := 0
			for _, e := range elems {
				total += len(e)
			}
			if total > len(v) {
				t.Fatalf("%d bytes of elements from %d of input", total, len(v))
			}
		}
		_, _ = binTextArray(v, &arena, true)
	})
}

// TestBinaryScanAllocs: a job decoded from the binary format costs two
// allocations (its row, its bytes) once its strings are interned.
func TestBinaryScanAllocs(t *testing.T) {
	row := binRow()
	var arena stringArena
	if _, err := decodeJobRow(row, &arena, false, false); err != nil { // interns its strings
		t.Fatal(err)
	}
	// The arena's backing array is shared by a batch: give it room for
	// every run, so that only the job's own allocations count.
	arena.free = make([]string, 2000)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := decodeJobRow(row, &arena, false, false); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("%.0f allocations per decoded job, want 2", allocs)
	}
}
