package pgexec

import (
	"bytes"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// The completer's array parameters encode to exactly the bytes pgx makes of
// the plain slices, in both formats, NULL elements included, and without an
// allocation per element.
func TestParamArraysEncodeAsSlices(t *testing.T) {
	m := pgtype.NewMap()
	const n = 100
	ids := make([]int64, n)
	times := make([]*time.Time, n)
	base := time.Date(2026, 12, 6, 17, 0, 0, 123456000, time.FixedZone("x", 3600))
	for i := range n {
		ids[i] = int64(1)<<40 + int64(i) // boxed by pgx: beyond the runtime's small-int cache
		if i%7 != 3 {
			ti := base.Add(time.Duration(i) * time.Microsecond)
			times[i] = &ti
		}
	}
	encode := func(oid uint32, format int16, v any) []byte {
		t.Helper()
		b, err := m.Encode(oid, format, v, nil)
		if err != nil {
			t.Fatalf("encode %T: %v", v, err)
		}
		return b
	}
	for _, format := range []int16{pgtype.BinaryFormatCode, pgtype.TextFormatCode} {
		if got, want := encode(pgtype.Int8ArrayOID, format, int8Array(ids)), encode(pgtype.Int8ArrayOID, format, ids); !bytes.Equal(got, want) {
			t.Errorf("format %d: int8Array encodes as %q; []int64 as %q", format, got, want)
		}
		if got, want := encode(pgtype.TimestamptzArrayOID, format, timestamptzArray(times)), encode(pgtype.TimestamptzArrayOID, format, times); !bytes.Equal(got, want) {
			t.Errorf("format %d: timestamptzArray encodes as %q; []*time.Time as %q", format, got, want)
		}
	}
	// Where the parameter's type is not known (OID 0: the simple protocol,
	// QueryExecModeExec), pgx finds it from the value, as for the slices.
	if got, want := encode(0, pgtype.TextFormatCode, int8Array(ids)), encode(0, pgtype.TextFormatCode, ids); !bytes.Equal(got, want) {
		t.Errorf("unknown type: int8Array encodes as %q; []int64 as %q", got, want)
	}
	if got, want := encode(0, pgtype.TextFormatCode, timestamptzArray(times)), encode(0, pgtype.TextFormatCode, times); !bytes.Equal(got, want) {
		t.Errorf("unknown type: timestamptzArray encodes as %q; []*time.Time as %q", got, want)
	}
	// Empty and nil arrays, as the slices: '{}' and NULL.
	for _, c := range []struct {
		name         string
		oid          uint32
		typed, plain any
	}{
		{"empty int8Array", pgtype.Int8ArrayOID, int8Array{}, []int64{}},
		{"nil int8Array", pgtype.Int8ArrayOID, int8Array(nil), []int64(nil)},
		{"empty timestamptzArray", pgtype.TimestamptzArrayOID, timestamptzArray{}, []*time.Time{}},
		{"nil timestamptzArray", pgtype.TimestamptzArrayOID, timestamptzArray(nil), []*time.Time(nil)},
	} {
		for _, format := range []int16{pgtype.BinaryFormatCode, pgtype.TextFormatCode} {
			got, want := encode(c.oid, format, c.typed), encode(c.oid, format, c.plain)
			if !bytes.Equal(got, want) || (got == nil) != (want == nil) {
				t.Errorf("format %d: %s encodes as %q (nil %v); the slice as %q (nil %v)", format, c.name, got, got == nil, want, want == nil)
			}
		}
	}

	buf := make([]byte, 0, 1<<14)
	allocs := func(v any, oid uint32) float64 {
		return testing.AllocsPerRun(20, func() {
			if _, err := m.Encode(oid, pgtype.BinaryFormatCode, v, buf[:0]); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The plain slices allocate per element (the cost these types remove);
	// the types allocate a few times per array at most.
	for _, c := range []struct {
		name      string
		typed, sl any
		oid       uint32
	}{
		{"bigint[]", int8Array(ids), ids, pgtype.Int8ArrayOID},
		{"timestamptz[]", timestamptzArray(times), times, pgtype.TimestamptzArrayOID},
	} {
		typed, plain := allocs(c.typed, c.oid), allocs(c.sl, c.oid)
		if plain < n*0.8 {
			t.Fatalf("%s: the plain slice allocated %.0f times for %d elements; this test assumes pgx boxes each", c.name, plain, n)
		}
		if typed > 4 {
			t.Errorf("%s: encoding %d elements allocated %.0f times (the plain slice %.0f); want at most 4", c.name, n, typed, plain)
		}
	}
}
