package databasesql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/millrace/millrace/driver/internal/pgexec"
)

// queryer is what *sql.DB and *sql.Tx have in common.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// poolDB is the pgexec.DB of a *sql.DB. Its hot statements go out as
// pgxv5's do, pipelined on one connection of the pool.
type poolDB struct{ db *sql.DB }

var _ pgexec.HotRunner = (*poolDB)(nil)

func (p *poolDB) Begin(ctx context.Context) (pgexec.Tx, error) {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return newTxDB(tx), nil
}

func (p *poolDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return execOn(ctx, p.db, sql, args)
}

func (p *poolDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return queryOn(ctx, p.db, sql, args)
}

func (p *poolDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := queryOn(ctx, p.db, sql, args)
	return &row{rows: rows, err: err}
}

// onPgxConn runs fn on the pgx connection of one connection of the pool,
// taken for the call.
func (p *poolDB) onPgxConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("databasesql: a connection of the *sql.DB is a %T, not pgx/v5's stdlib", dc)
		}
		return fn(sc.Conn())
	})
}

func (p *poolDB) HotQuery(ctx context.Context, sql string, args []any, read func(pgx.Rows) error) error {
	return p.onPgxConn(ctx, func(c *pgx.Conn) error {
		return pgexec.SendHotQuery(ctx, c, sql, args, read)
	})
}

func (p *poolDB) HotExec(ctx context.Context, sql string, args []any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := p.onPgxConn(ctx, func(c *pgx.Conn) error {
		var err error
		tag, err = pgexec.SendHotExec(ctx, c, sql, args)
		return err
	})
	return tag, err
}

// txDB is the pgexec.Tx of a *sql.Tx, or of a savepoint inside one
// (savepoint not empty).
type txDB struct {
	tx        *sql.Tx
	savepoint string
	// savepoints numbers the savepoints of the transaction.
	savepoints *atomic.Int64
	done       atomic.Bool
}

func newTxDB(tx *sql.Tx) *txDB { return &txDB{tx: tx, savepoints: new(atomic.Int64)} }

func (t *txDB) Begin(ctx context.Context) (pgexec.Tx, error) {
	name := "millrace_sp_" + strconv.FormatInt(t.savepoints.Add(1), 10)
	if _, err := t.tx.ExecContext(ctx, "SAVEPOINT "+name); err != nil {
		return nil, err
	}
	return &txDB{tx: t.tx, savepoint: name, savepoints: t.savepoints}, nil
}

func (t *txDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return execOn(ctx, t.tx, sql, args)
}

func (t *txDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return queryOn(ctx, t.tx, sql, args)
}

func (t *txDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := queryOn(ctx, t.tx, sql, args)
	return &row{rows: rows, err: err}
}

func (t *txDB) Commit(ctx context.Context) error {
	if t.savepoint == "" {
		return txErr(t.tx.Commit())
	}
	if t.done.Swap(true) {
		return pgx.ErrTxClosed
	}
	_, err := t.tx.ExecContext(ctx, "RELEASE SAVEPOINT "+t.savepoint)
	return err
}

func (t *txDB) Rollback(ctx context.Context) error {
	if t.savepoint == "" {
		return txErr(t.tx.Rollback())
	}
	if t.done.Swap(true) {
		return pgx.ErrTxClosed
	}
	_, err := t.tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT "+t.savepoint)
	return err
}

// txErr gives pgx's error for a transaction already ended.
func txErr(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return pgx.ErrTxClosed
	}
	return err
}

func execOn(ctx context.Context, q queryer, sql string, args []any) (pgconn.CommandTag, error) {
	res, err := q.ExecContext(ctx, sql, args...)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	// pgx reads the count from the tag's last word; the verb is lost.
	return pgconn.NewCommandTag("EXEC " + strconv.FormatInt(n, 10)), nil
}

func queryOn(ctx context.Context, q queryer, sql string, args []any) (*rows, error) {
	r, err := q.QueryContext(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return &rows{rows: r}, nil
}

// rows reads *sql.Rows as pgx.Rows. pgx's stdlib hands database/sql the
// columns of a few types (integers, floats, bool, bytea, timestamps,
// dates) decoded, and those database/sql converts as usual; every other
// column (text, JSON, arrays, bit strings ...) arrives as its text, which
// is scanned with pgx's codec for the column's type, as pgx would.
type rows struct {
	rows   *sql.Rows
	typeOf []uint32 // column OIDs; nil until the first Scan
	binary []bool   // columns database/sql gets decoded
	m      *pgtype.Map
	err    error
}

var _ pgx.Rows = (*rows)(nil)

func (r *rows) Close() { _ = r.rows.Close() }

func (r *rows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.rows.Err()
}

// CommandTag is unknown through database/sql.
func (r *rows) CommandTag() pgconn.CommandTag { return pgconn.CommandTag{} }

// FieldDescriptions are unknown through database/sql.
func (r *rows) FieldDescriptions() []pgconn.FieldDescription { return nil }

func (r *rows) Next() bool { return r.rows.Next() }

// binaryOIDs are the types pgx's stdlib asks in binary and hands
// database/sql decoded.
var binaryOIDs = map[uint32]bool{
	pgtype.BoolOID: true, pgtype.ByteaOID: true, pgtype.CIDOID: true, pgtype.DateOID: true,
	pgtype.Float4OID: true, pgtype.Float8OID: true, pgtype.Int2OID: true, pgtype.Int4OID: true,
	pgtype.Int8OID: true, pgtype.OIDOID: true, pgtype.TimestampOID: true, pgtype.TimestamptzOID: true,
	pgtype.XIDOID: true,
}

func (r *rows) columns() error {
	types, err := r.rows.ColumnTypes()
	if err != nil {
		return err
	}
	m := r.TypeMap()
	r.typeOf = make([]uint32, len(types))
	r.binary = make([]bool, len(types))
	for i, ct := range types {
		// pgx's stdlib names a type it knows in upper case, else gives its
		// OID in decimal.
		name := ct.DatabaseTypeName()
		if oid, err := strconv.ParseUint(name, 10, 32); err == nil {
			r.typeOf[i] = uint32(oid)
		} else if t, ok := m.TypeForName(strings.ToLower(name)); ok {
			r.typeOf[i] = t.OID
		} else {
			return fmt.Errorf("databasesql: column %d has type %q, unknown to pgx", i, name)
		}
		r.binary[i] = binaryOIDs[r.typeOf[i]]
	}
	return nil
}

func (r *rows) Scan(dest ...any) error {
	if r.typeOf == nil {
		if err := r.columns(); err != nil {
			r.err = err
			return err
		}
	}
	if len(dest) != len(r.typeOf) {
		err := fmt.Errorf("databasesql: %d destinations for %d columns", len(dest), len(r.typeOf))
		r.err = err
		return err
	}
	wrapped := make([]any, len(dest))
	for i, d := range dest {
		if r.binary[i] {
			wrapped[i] = d
		} else {
			wrapped[i] = &textScanner{m: r.m, oid: r.typeOf[i], dest: d}
		}
	}
	if err := r.rows.Scan(wrapped...); err != nil {
		r.err = err
		return err
	}
	return nil
}

func (r *rows) Values() ([]any, error) {
	return nil, errors.New("databasesql: Values is not supported")
}

func (r *rows) RawValues() [][]byte { return nil }

func (r *rows) Conn() *pgx.Conn { return nil }

// TypeMap is the map columns are scanned with.
func (r *rows) TypeMap() *pgtype.Map {
	if r.m == nil {
		r.m = pgtype.NewMap()
	}
	return r.m
}

// textScanner scans a column that arrives as text with pgx's codec for
// its type.
type textScanner struct {
	m    *pgtype.Map
	oid  uint32
	dest any
}

func (s *textScanner) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("databasesql: column of type OID %d arrived as %T, not as text", s.oid, src)
	}
	return s.m.Scan(s.oid, pgtype.TextFormatCode, b, s.dest)
}

// row is a pgx.Row on rows: pgx.ErrNoRows when there is none.
type row struct {
	rows *rows
	err  error
}

func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
