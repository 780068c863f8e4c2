package pgexec

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/millrace/millrace/driver"
)

var _ driver.PendingListCleaner = (*executor)(nil)

// sqlPendingListClean merges the pending lists of the indexes named by
// $1 (quoted, qualified names: to_regclass parses them, so a name never
// reaches the SQL text; one that does not exist gives NULL, and
// gin_clean_pending_list(NULL) is NULL) and reads the limit at which a
// statement would merge them itself.
const sqlPendingListClean = `
SELECT coalesce(sum(gin_clean_pending_list(to_regclass(name))), 0)::bigint,
    pg_size_bytes(current_setting('gin_pending_list_limit'))
FROM unnest($1::text[]) AS name`

// PendingListClean implements driver.PendingListCleaner.
func (e *executor) PendingListClean(ctx context.Context, p *driver.PendingListCleanParams) (*driver.PendingListCleanResult, error) {
	names := make([]string, len(driver.PendingListIndexes))
	for i, index := range driver.PendingListIndexes {
		id := pgx.Identifier{index}
		if p.Schema != "" {
			id = pgx.Identifier{p.Schema, index}
		}
		names[i] = id.Sanitize()
	}
	var res driver.PendingListCleanResult
	if err := e.db.QueryRow(ctx, sqlPendingListClean, names).Scan(&res.Pages, &res.LimitBytes); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
			return nil, fmt.Errorf("%w: %w", driver.ErrNotIndexOwner, err)
		}
		return nil, err
	}
	return &res, nil
}
