package pgexec

import (
	"database/sql/driver"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Array parameters of the completer's statements, encoded by pgx without an
// allocation per element.
//
// pgx encodes a slice parameter as an array by handing each element to the
// element type's encoder as an `any`. For []int64 that boxes every ID above
// 255 (one allocation per job), and for []*time.Time pgx dereferences each
// pointer through reflection and wraps the time again (two allocations per
// job): three of the ten allocations of a completed job's whole path. These
// types hand out each element as a pointer (an interface holding a pointer
// allocates nothing) to a type that gives its value to pgx's codec through
// the codec's own valuer interface (Int64Valuer, TimestamptzValuer), so the
// array's bytes are the same and nothing is allocated per element.
//
// They are pgx types: they work wherever the statements run, on a pgx pool
// or connection, or through database/sql on pgx's stdlib (which passes
// every argument through to pgx; driver/databasesql accepts no other).
// Where pgx does not know a parameter's type (the simple protocol and
// QueryExecModeExec send no parameter types to learn), it takes the array
// from Value as the plain slice, and encodes that as it always did.

// int8Array is a bigint[] parameter (no NULL elements; a nil one is NULL,
// as pgx sends any nil slice).
type int8Array []int64

func (a int8Array) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

func (a int8Array) Index(i int) any { return (*int8Elem)(&a[i]) }

func (a int8Array) IndexType() any { return (*int8Elem)(nil) }

func (a int8Array) Value() (driver.Value, error) { return []int64(a), nil }

type int8Elem int64

func (v *int8Elem) Int64Value() (pgtype.Int8, error) {
	return pgtype.Int8{Int64: int64(*v), Valid: true}, nil
}

// timestamptzArray is a timestamptz[] parameter; a nil element is a NULL
// (and a nil one is NULL, as pgx sends any nil slice).
type timestamptzArray []*time.Time

func (a timestamptzArray) Dimensions() []pgtype.ArrayDimension {
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

func (a timestamptzArray) Index(i int) any {
	if a[i] == nil {
		return nil
	}
	return (*timestamptzElem)(a[i])
}

func (a timestamptzArray) IndexType() any { return (*timestamptzElem)(nil) }

func (a timestamptzArray) Value() (driver.Value, error) { return []*time.Time(a), nil }

type timestamptzElem time.Time

func (t *timestamptzElem) TimestamptzValue() (pgtype.Timestamptz, error) {
	return pgtype.Timestamptz{Time: time.Time(*t), Valid: true}, nil
}
