package pgexec

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/millrace/millrace/millracetype"
)

// The hot statements' rows (a fetch's hundreds of jobs, the completer's
// rows) are decoded straight from their binary wire format when the
// result has the exact layout of jobColumnNames in binary: a job costs
// two allocations (the row with its two optional times, and one buffer
// for args, metadata and unique_key), where pgx's generic scan into the
// destinations of jobScan costs about fourteen (reflection plans, a
// string per text value, a slice per array, a pointer per optional
// value). Strings that repeat from job to job (kind, queue, the clients
// of attempted_by) are interned; the string slices of a batch share one
// backing array. Any other layout (text format under a simple-protocol
// query mode, say) goes through scanJob, which gives the same rows (the
// tests compare the two).

// binaryJobOIDs are the type OIDs of jobColumnNames' columns, in order.
var binaryJobOIDs = [...]uint32{
	pgtype.Int8OID, pgtype.JSONBOID, pgtype.Int2OID, pgtype.TimestamptzOID, pgtype.TextArrayOID,
	pgtype.TimestamptzOID, pgtype.JSONBArrayOID, pgtype.TimestamptzOID, pgtype.TextOID, pgtype.Int2OID,
	pgtype.JSONBOID, pgtype.Int2OID, pgtype.TextOID, pgtype.TimestamptzOID, pgtype.TextOID,
	pgtype.VarcharArrayOID, pgtype.ByteaOID, pgtype.Int4OID,
}

// binaryLayout reports whether fields are jobColumnNames (maybe followed
// by others, which are ignored), each with its expected type, in binary
// format except that text and jsonb values may come as text (pgx asks for
// them so: a text value's bytes are the same either way, and a jsonb value
// is then its JSON text without the binary format's version byte).
func binaryLayout(fields []pgconn.FieldDescription) bool {
	if len(fields) < len(binaryJobOIDs) {
		return false
	}
	for i, oid := range binaryJobOIDs {
		f := &fields[i]
		textOK := oid == pgtype.TextOID || oid == pgtype.JSONBOID
		if f.DataTypeOID != oid || f.Name != jobColumnNames[i] ||
			(f.Format != pgx.BinaryFormatCode && !(textOK && f.Format == pgx.TextFormatCode)) {
			return false
		}
	}
	return true
}

// collectJobs reads every row of a job query: from the binary format when
// the layout allows (see above), else with scanJob.
func collectJobs(rows pgx.Rows) ([]*millracetype.JobRow, error) {
	defer rows.Close()
	var (
		jobs                   []*millracetype.JobRow
		checked, fast          bool
		argsText, metadataText bool // formats of the two jsonb columns
		arena                  stringArena
	)
	for rows.Next() {
		if !checked {
			fields := rows.FieldDescriptions()
			checked, fast = true, binaryLayout(fields)
			if fast {
				argsText, metadataText = fields[1].Format == pgx.TextFormatCode, fields[10].Format == pgx.TextFormatCode
			}
		}
		var job *millracetype.JobRow
		var err error
		if fast {
			job, err = decodeJobRow(rows.RawValues(), &arena, argsText, metadataText)
		} else {
			job, err = scanJob(rows)
		}
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, job)
	}
	return jobs, rows.Err()
}

// rowBox is a decoded job with the values its optional times point to,
// one allocation.
type rowBox struct {
	row         millracetype.JobRow
	attemptedAt time.Time
	finalizedAt time.Time
}

// errBinaryJob reports a value that is not what its type's binary format
// allows (never seen from a server; a guard against reading past a
// buffer).
var errBinaryJob = errors.New("malformed binary value in a job row")

// decodeJobRow decodes one row of binaryLayout; argsText and metaText
// say that args and metadata come in text format.
func decodeJobRow(vals [][]byte, arena *stringArena, argsText, metaText bool) (*millracetype.JobRow, error) {
	if len(vals) < len(binaryJobOIDs) {
		return nil, fmt.Errorf("%w: %d columns", errBinaryJob, len(vals))
	}
	b := new(rowBox)
	r := &b.row
	var err error
	fail := func(col int, e error) (*millracetype.JobRow, error) {
		return nil, fmt.Errorf("column %s: %w", jobColumnNames[col], e)
	}
	// Fixed-size values and times.
	if r.ID, err = binInt(vals[0], 8); err != nil {
		return fail(0, err)
	}
	var n int64
	if n, err = binInt(vals[2], 2); err != nil {
		return fail(2, err)
	}
	r.Attempt = int(n)
	if n, err = binInt(vals[9], 2); err != nil {
		return fail(9, err)
	}
	r.MaxAttempts = int(n)
	if n, err = binInt(vals[11], 2); err != nil {
		return fail(11, err)
	}
	r.Priority = int(n)
	if vals[17] != nil {
		if n, err = binInt(vals[17], 4); err != nil {
			return fail(17, err)
		}
		r.UniqueStates = byte(n)
	}
	if r.CreatedAt, err = binTime(vals[5]); err != nil {
		return fail(5, err)
	}
	if r.ScheduledAt, err = binTime(vals[13]); err != nil {
		return fail(13, err)
	}
	if vals[3] != nil {
		if b.attemptedAt, err = binTime(vals[3]); err != nil {
			return fail(3, err)
		}
		r.AttemptedAt = &b.attemptedAt
	}
	if vals[7] != nil {
		if b.finalizedAt, err = binTime(vals[7]); err != nil {
			return fail(7, err)
		}
		r.FinalizedAt = &b.finalizedAt
	}
	// Strings.
	if vals[8] == nil || vals[12] == nil || vals[14] == nil {
		return nil, fmt.Errorf("%w: NULL kind, queue or state", errBinaryJob)
	}
	r.Kind, r.Queue = intern(vals[8]), intern(vals[12])
	if r.State, err = jobState(vals[14]); err != nil {
		return fail(14, err)
	}
	// args, metadata and unique_key in one buffer, each capped so that an
	// append to one never writes into the next.
	args, meta := vals[1], vals[10]
	if !argsText {
		if args, err = binJSONB(args); err != nil {
			return fail(1, err)
		}
	}
	if !metaText {
		if meta, err = binJSONB(meta); err != nil {
			return fail(10, err)
		}
	}
	key := vals[16]
	buf := make([]byte, 0, len(args)+len(meta)+len(key))
	buf = append(buf, args...)
	r.Args = buf[0:len(args):len(args)]
	buf = append(buf, meta...)
	r.Metadata = buf[len(args):len(buf):len(buf)]
	if key != nil {
		start := len(buf)
		buf = append(buf, key...)
		r.UniqueKey = buf[start:len(buf):len(buf)]
	}
	if args == nil {
		r.Args = nil
	}
	if meta == nil {
		r.Metadata = nil
	}
	// Arrays.
	if r.AttemptedBy, err = binTextArray(vals[4], arena, true); err != nil {
		return fail(4, err)
	}
	if r.Tags, err = binTextArray(vals[15], arena, false); err != nil {
		return fail(15, err)
	}
	if r.Tags == nil {
		r.Tags = []string{}
	}
	if vals[6] != nil {
		var raw [][]byte
		if raw, err = binArrayElems(vals[6], nil); err != nil {
			return fail(6, err)
		}
		if len(raw) > 0 {
			r.Errors = make([]millracetype.AttemptError, len(raw))
			for i, e := range raw {
				body, err := binJSONB(e)
				if err == nil {
					err = json.Unmarshal(body, &r.Errors[i])
				}
				if err != nil {
					r.Errors[i] = millracetype.AttemptError{Error: fmt.Sprintf("millrace: undecodable error entry: %v: %s", err, body)}
				}
				r.Errors[i].At = r.Errors[i].At.UTC()
			}
		}
	}
	return r, nil
}

// binInt decodes a binary integer of size bytes (2, 4 or 8).
func binInt(v []byte, size int) (int64, error) {
	if len(v) != size {
		return 0, fmt.Errorf("%w: %d bytes for an integer of %d", errBinaryJob, len(v), size)
	}
	switch size {
	case 2:
		return int64(int16(binary.BigEndian.Uint16(v))), nil
	case 4:
		return int64(int32(binary.BigEndian.Uint32(v))), nil
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// pgEpochMicros is 2000-01-01 00:00:00 UTC, Postgres's epoch, in
// microseconds since the Unix epoch.
const pgEpochMicros = 946684800 * 1000000

// binTime decodes a binary timestamptz (microseconds since 2000-01-01
// UTC) as a UTC time. Infinite values are refused, as pgx's scan into a
// time.Time refuses them.
func binTime(v []byte) (time.Time, error) {
	us, err := binInt(v, 8)
	if err != nil {
		return time.Time{}, err
	}
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, fmt.Errorf("%w: an infinite timestamp", errBinaryJob)
	}
	if us > math.MaxInt64-pgEpochMicros || us < math.MinInt64+pgEpochMicros {
		return time.Time{}, fmt.Errorf("%w: timestamp out of range", errBinaryJob)
	}
	return time.UnixMicro(us + pgEpochMicros).UTC(), nil
}

// binJSONB strips a binary jsonb value's version byte (1). NULL stays nil.
func binJSONB(v []byte) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	if len(v) == 0 || v[0] != 1 {
		return nil, fmt.Errorf("%w: unknown jsonb format", errBinaryJob)
	}
	return v[1:], nil
}

// jobState maps a state's text to its constant (no allocation).
func jobState(v []byte) (millracetype.JobState, error) {
	switch string(v) {
	case "available":
		return millracetype.JobStateAvailable, nil
	case "cancelled":
		return millracetype.JobStateCancelled, nil
	case "completed":
		return millracetype.JobStateCompleted, nil
	case "discarded":
		return millracetype.JobStateDiscarded, nil
	case "pending":
		return millracetype.JobStatePending, nil
	case "retryable":
		return millracetype.JobStateRetryable, nil
	case "running":
		return millracetype.JobStateRunning, nil
	case "scheduled":
		return millracetype.JobStateScheduled, nil
	}
	return millracetype.JobState(string(v)), nil
}

// binArrayElems splits a one-dimensional binary array into its elements
// (nil for a NULL element), appending to dst. A NULL array gives nil; an
// empty one no elements.
func binArrayElems(v []byte, dst [][]byte) ([][]byte, error) {
	if v == nil {
		return nil, nil
	}
	if len(v) < 12 {
		return nil, fmt.Errorf("%w: array header of %d bytes", errBinaryJob, len(v))
	}
	ndim := int32(binary.BigEndian.Uint32(v))
	if ndim == 0 {
		return dst[:0], nil
	}
	if ndim != 1 || len(v) < 20 {
		return nil, fmt.Errorf("%w: an array of %d dimensions", errBinaryJob, ndim)
	}
	count := int32(binary.BigEndian.Uint32(v[12:]))
	if count < 0 || int64(count)*4 > int64(len(v)-20) {
		return nil, fmt.Errorf("%w: %d array elements in %d bytes", errBinaryJob, count, len(v))
	}
	rest := v[20:]
	for range count {
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: array element cut short", errBinaryJob)
		}
		size := int32(binary.BigEndian.Uint32(rest))
		rest = rest[4:]
		if size < 0 {
			dst = append(dst, nil)
			continue
		}
		if int(size) > len(rest) {
			return nil, fmt.Errorf("%w: array element of %d bytes in %d", errBinaryJob, size, len(rest))
		}
		dst = append(dst, rest[:size:size])
		rest = rest[size:]
	}
	return dst, nil
}

// binTextArray decodes a binary text[] or varchar[] into strings from
// arena, interned when interned is set. NULL gives nil; a NULL element is
// refused (pgx's scan into []string refuses it too).
func binTextArray(v []byte, arena *stringArena, interned bool) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	var stack [8][]byte
	elems, err := binArrayElems(v, stack[:0])
	if err != nil {
		return nil, err
	}
	out := arena.take(len(elems))
	for i, e := range elems {
		switch {
		case e == nil:
			return nil, fmt.Errorf("%w: NULL array element", errBinaryJob)
		case interned:
			out[i] = intern(e)
		default:
			out[i] = string(e)
		}
	}
	return out, nil
}

// stringArena hands out string slices of one batch from shared backing
// arrays (each capped, so an append to one copies it).
type stringArena struct{ free []string }

func (a *stringArena) take(n int) []string {
	if n == 0 {
		return []string{}
	}
	if len(a.free) < n {
		a.free = make([]string, max(n, 256))
	}
	s := a.free[:n:n]
	a.free = a.free[n:]
	return s
}

// The intern table: kinds, queues and client IDs repeat from job to job.
// It is dropped when it grows past internMax entries (a workload of
// ever-new names then simply allocates, as without it).
const internMax = 4096

var interned struct {
	sync.RWMutex
	m map[string]string
}

// intern returns b as a string, the same string for the same bytes while
// the table holds it.
func intern(b []byte) string {
	interned.RLock()
	s, ok := interned.m[string(b)]
	interned.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	interned.Lock()
	if interned.m == nil || len(interned.m) >= internMax {
		interned.m = make(map[string]string, 64)
	}
	interned.m[s] = s
	interned.Unlock()
	return s
}
