package driver

import (
	"context"
	"errors"
)

// PendingListIndexes are the job table's GIN indexes (River's schema):
// the indexes whose pending lists a PendingListCleaner merges.
var PendingListIndexes = []string{"river_job_args_index", "river_job_metadata_index"}

// ErrNotIndexOwner is wrapped by PendingListClean's error when the
// database refuses because the connection's role does not own the
// indexes (Postgres lets only an index's owner merge its pending list).
var ErrNotIndexOwner = errors.New("the connection's role does not own the job table's GIN indexes")

// PendingListCleaner is implemented by an Executor whose database keeps
// the job table's GIN indexes (args, metadata) with a pending list:
// Postgres' fastupdate appends each new index entry to an unsorted list
// and merges the list into the index, in bulk, when it grows past
// gin_pending_list_limit (4 MB by default), inside whichever statement
// crossed the limit. Every non-HOT row version adds entries (an insert, a
// fetch, a completion), so on a busy job table some fetch, insert or
// completion pays a merge of the whole list every few seconds: a
// statement that takes a few milliseconds takes hundreds then.
// PendingListClean merges the lists beforehand (gin_clean_pending_list),
// off the hot statements' path. A driver without GIN indexes (SQLite)
// does not implement it.
type PendingListCleaner interface {
	PendingListClean(ctx context.Context, params *PendingListCleanParams) (*PendingListCleanResult, error)
}

// PendingListCleanParams names the schema of the job table.
type PendingListCleanParams struct {
	Schema string
}

// PendingListCleanResult is what a PendingListClean did.
type PendingListCleanResult struct {
	// Pages is how many pending-list pages were merged, over all of
	// PendingListIndexes (0 when the lists were empty; an index that does
	// not exist counts 0).
	Pages int64
	// LimitBytes is the session's gin_pending_list_limit: the size at
	// which a statement adding entries merges a list itself.
	LimitBytes int64
}
