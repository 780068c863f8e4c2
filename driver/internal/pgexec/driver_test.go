package pgexec

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// testDriver is the smallest driver on the package's pgx DB, for the tests
// here (package migrate needs a driver; driver/pgxv5 cannot be imported).
type testDriver struct {
	pool *pgxpool.Pool
	sql  *SQLCache
}

var _ driver.Driver[pgx.Tx] = (*testDriver)(nil)

func newTestDriver(pool *pgxpool.Pool) *testDriver {
	return &testDriver{pool: pool, sql: NewSQLCache()}
}

func (d *testDriver) GetExecutor() driver.Executor { return NewExecutor(PoolDB{d.pool}, d.sql) }

func (d *testDriver) UnwrapExecutor(tx pgx.Tx) driver.ExecutorTx {
	return NewExecutorTx(PgxTx{tx}, d.sql, true)
}

func (d *testDriver) UnwrapTx(tx driver.ExecutorTx) (pgx.Tx, error) {
	if etx, ok := tx.(*ExecutorTx); ok {
		if ptx, ok := etx.Tx().(PgxTx); ok {
			return ptx.Tx, nil
		}
	}
	return nil, fmt.Errorf("executor %T not made by the test driver", tx)
}

func (d *testDriver) GetListener(string) (driver.Listener, error) {
	return nil, errors.New("the test driver does not listen")
}

func (d *testDriver) SupportsListener() bool { return false }
func (d *testDriver) PoolIsSet() bool        { return true }
