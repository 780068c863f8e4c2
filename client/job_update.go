package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// ErrReservedMetadataKey is returned (wrapped) when user code sets a
// metadata key starting with "river:" or "millrace:": River and millrace keep their own
// bookkeeping (resumable steps, rescue counts, ...) under that prefix.
var ErrReservedMetadataKey = errors.New(`keys starting with "river:" or "millrace:" are reserved`)

// MetadataSet sets key to value (encoded as JSON) in the metadata of the
// job being worked. Updates are kept with the job's context and merged
// top-level into the job's metadata when the attempt's outcome is written,
// whatever the outcome (success, error, panic, snooze, cancel); setting a
// key again replaces the value. Call it from Work, or from worker
// middleware, with the job's context.
//
// Errors (each wrapped): ErrReservedMetadataKey for a key starting with
// "river:" or "millrace:"; ErrNotInWorker outside a job's context or after Work returned;
// an encoding error for a value encoding/json cannot encode.
func MetadataSet(ctx context.Context, key string, value any) error {
	if reservedMetadataKey(key) {
		return fmt.Errorf("metadata set %q: %w", key, ErrReservedMetadataKey)
	}
	st := jobStateFrom(ctx)
	if st == nil {
		return fmt.Errorf("metadata set %q: %w", key, ErrNotInWorker)
	}
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("metadata set %q: encode %T: %w", key, value, err)
	}
	st.Mu.Lock()
	defer st.Mu.Unlock()
	if st.Finished {
		return fmt.Errorf("metadata set %q: the job's run has ended: %w", key, ErrNotInWorker)
	}
	st.SetUpdate(key, b)
	return nil
}

// JobUpdateParams is what JobUpdate changes. Nil fields change nothing.
type JobUpdateParams struct {
	// Metadata, when set, is a JSON object merged top-level into the job's
	// metadata: keys given replace the stored ones (null stores null),
	// others are kept. Keys starting with "river:" or "millrace:" are refused
	// (ErrReservedMetadataKey), and so is key "output" together with
	// Output.
	Metadata []byte
	// Output, when not nil, becomes the job's output (metadata key
	// "output"), encoded as JSON, at most MaxOutputSize bytes. When nil and
	// called from the job's own worker (with its context), the output
	// recorded so far with RecordOutput is stored at once.
	Output any
}

// JobUpdate changes a job's metadata or output at once, whatever its
// state, and returns the job as stored. From outside it lets a job be
// annotated; from the job's own worker it stores output eagerly rather
// than when the attempt ends. A missing job gives an error wrapping
// ErrNotFound; invalid params one wrapping ErrInvalidArgs (or
// ErrReservedMetadataKey), and nothing is written. Metadata stored as
// something other than a JSON object is left alone and reported as an
// error rather than reshaped.
func (c *Client[TTx]) JobUpdate(ctx context.Context, id int64, params *JobUpdateParams) (*millracetype.JobRow, error) {
	return c.jobUpdate(ctx, c.driver.GetExecutor(), id, params)
}

// JobUpdateTx is JobUpdate inside the caller's transaction.
func (c *Client[TTx]) JobUpdateTx(ctx context.Context, tx TTx, id int64, params *JobUpdateParams) (*millracetype.JobRow, error) {
	if any(tx) == nil {
		return nil, fmt.Errorf("update job %d: %w: transaction is nil", id, ErrInvalidArgs)
	}
	return c.jobUpdate(ctx, c.driver.UnwrapExecutor(tx), id, params)
}

func (c *Client[TTx]) jobUpdate(ctx context.Context, exec driver.Executor, id int64, params *JobUpdateParams) (*millracetype.JobRow, error) {
	merge, err := jobUpdateMerge(ctx, id, params)
	if err != nil {
		return nil, fmt.Errorf("update job %d: %w", id, err)
	}
	job, err := exec.JobUpdate(ctx, &driver.JobUpdateParams{Schema: c.config.Schema, ID: id, MetadataMerge: merge})
	if err != nil {
		return nil, fmt.Errorf("update job %d: %w", id, err)
	}
	return job, nil
}

// jobUpdateMerge validates params and builds the metadata object to merge
// (nil when there is nothing to change).
func jobUpdateMerge(ctx context.Context, id int64, params *JobUpdateParams) ([]byte, error) {
	if params == nil {
		params = &JobUpdateParams{}
	}
	var merge map[string]json.RawMessage
	if params.Metadata != nil {
		compact, err := validateMetadata(params.Metadata)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidArgs, err)
		}
		if err := json.Unmarshal(compact, &merge); err != nil {
			return nil, fmt.Errorf("%w: metadata: %w", ErrInvalidArgs, err)
		}
	}
	output := json.RawMessage(nil)
	switch {
	case params.Output != nil:
		if _, dup := merge["output"]; dup {
			return nil, fmt.Errorf(`%w: both Output and Metadata key "output" given`, ErrInvalidArgs)
		}
		b, err := encodeOutput(params.Output)
		if err != nil {
			return nil, fmt.Errorf("%w: output: %w", ErrInvalidArgs, err)
		}
		output = b
	default:
		// From the job's own worker: the output recorded so far.
		if st := jobStateFrom(ctx); st != nil {
			st.Mu.Lock()
			if st.Row != nil && st.Row.ID == id {
				output = st.Updates["output"]
			}
			st.Mu.Unlock()
		}
	}
	if output != nil {
		if merge == nil {
			merge = map[string]json.RawMessage{}
		}
		if _, dup := merge["output"]; !dup {
			merge["output"] = output
		}
	}
	if merge == nil {
		return nil, nil
	}
	return json.Marshal(merge)
}

// reservedMetadataKey reports a metadata key that River or millrace keep
// for themselves.
func reservedMetadataKey(k string) bool {
	return strings.HasPrefix(k, "river:") || strings.HasPrefix(k, "millrace:")
}
