package client

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/millracetype"
)

// ConcurrencyLimit bounds how many jobs of a queue, or of one kind in it,
// run at once: Global across every client working the queue on the
// database, Local on each client, PerPartition in each partition (per kind
// with PartitionByKind, per value of the args keys PartitionByArgs), for
// example "at most 3 sync_account jobs per customer and 50 in all":
//
//	client.ConcurrencyLimit{Kind: "sync_account", Global: 50,
//		PerPartition: 3, PartitionByArgs: []string{"customer_id"}}
//
// Zero means no such bound; a limit must set at least one and none may be
// negative (to stop a queue, pause it). A job whose args lack a partition
// key, or have null there, goes to that key's default partition, which
// all such jobs share. Declare limits in QueueConfig.Limits, or set them
// at run time with Client.QueueLimitSet (the CLI's `millrace limit set`).
// See "Concurrency limits" in the README for how they are kept.
type ConcurrencyLimit = millracetype.ConcurrencyLimit

// QueueLimit is a concurrency limit set at run time (a row of table
// millrace_limit): it replaces, on every client, the configured limit of
// its queue and kind until it is deleted.
type QueueLimit struct {
	// Queue is the queue limited.
	Queue string
	ConcurrencyLimit
	// CreatedAt and UpdatedAt are when the row was first set and last set.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Bounds of a ConcurrencyLimit.
const (
	// MaxLimitPartitionKeys is how many args keys a limit may partition by.
	MaxLimitPartitionKeys = 8
	maxLimitKeyLen        = 128
)

// validateLimit checks one limit. With workers, a partition key must be
// a JSON field of the args type of the limit's kind (or, for a limit of
// the whole queue, of some worker's args type), when those types are
// structs.
func validateLimit(l ConcurrencyLimit, workers *Workers) error {
	what := "limit of the whole queue"
	if l.Kind != "" {
		what = fmt.Sprintf("limit of kind %q", l.Kind)
		if !kindRE.MatchString(l.Kind) {
			return fmt.Errorf("%s: the kind is not a valid kind name", what)
		}
	}
	for name, v := range map[string]int{"Global": l.Global, "Local": l.Local, "PerPartition": l.PerPartition} {
		if v < 0 {
			return fmt.Errorf("%s: %s %d is negative (0 means none; to stop a queue, pause it)", what, name, v)
		}
	}
	if l.Global == 0 && l.Local == 0 && l.PerPartition == 0 {
		return fmt.Errorf("%s: Global, Local and PerPartition are all 0: a limit must bound something (to stop a queue, pause it)", what)
	}
	partitioned := l.PartitionByKind || len(l.PartitionByArgs) > 0
	if l.PerPartition > 0 && !partitioned {
		return fmt.Errorf("%s: PerPartition %d needs PartitionByKind or PartitionByArgs", what, l.PerPartition)
	}
	if l.PerPartition == 0 && partitioned {
		return fmt.Errorf("%s: PartitionByKind or PartitionByArgs is set but PerPartition is 0", what)
	}
	if l.PartitionByKind && l.Kind != "" {
		return fmt.Errorf("%s: PartitionByKind needs a limit of the whole queue (a kind's limit has one kind)", what)
	}
	if len(l.PartitionByArgs) > MaxLimitPartitionKeys {
		return fmt.Errorf("%s: %d PartitionByArgs keys, at most %d", what, len(l.PartitionByArgs), MaxLimitPartitionKeys)
	}
	for i, k := range l.PartitionByArgs {
		if k == "" || len(k) > maxLimitKeyLen {
			return fmt.Errorf("%s: PartitionByArgs key %q must be 1..%d bytes", what, k, maxLimitKeyLen)
		}
		if slices.Contains(l.PartitionByArgs[:i], k) {
			return fmt.Errorf("%s: PartitionByArgs key %q appears twice", what, k)
		}
	}
	if workers != nil && len(l.PartitionByArgs) > 0 {
		return checkPartitionKeys(what, l, workers)
	}
	return nil
}

// ErrUnknownPartitionKey is wrapped (with ErrInvalidConfig) by the error
// for a limit that partitions by an args key its kind's args type does
// not have.
var ErrUnknownPartitionKey = errors.New("unknown partition key")

// checkPartitionKeys checks the keys against the args types the client
// knows: every key must be a field of the kind's args (a limit of one
// kind), or of some worker's args (a limit of the whole queue). Args
// types that are not structs, or are unknown, are not checked.
func checkPartitionKeys(what string, l ConcurrencyLimit, workers *Workers) error {
	workers.mu.Lock()
	var types []reflect.Type
	for kind, w := range workers.byKind {
		if l.Kind == "" || kind == l.Kind {
			types = append(types, w.argsType)
		}
	}
	workers.mu.Unlock()
	var fields []map[string]bool
	for _, t := range types {
		f, ok := jsonFields(t)
		if !ok {
			return nil // a type we cannot read could have any key
		}
		fields = append(fields, f)
	}
	if len(fields) == 0 {
		return nil
	}
	for _, k := range l.PartitionByArgs {
		found := false
		for _, f := range fields {
			found = found || f[k]
		}
		if !found {
			return fmt.Errorf("%s: %w %q: no args type of the kinds it applies to has a JSON field of that name", what, ErrUnknownPartitionKey, k)
		}
	}
	return nil
}

// jsonFields returns the top-level JSON field names of a struct type (as
// encoding/json names them), and false for a type that is not a struct or
// encodes itself.
func jsonFields(t reflect.Type) (map[string]bool, bool) {
	if t == nil {
		return nil, false
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	marshaler := reflect.TypeFor[interface{ MarshalJSON() ([]byte, error) }]()
	if t.Kind() != reflect.Struct || t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler) {
		return nil, false
	}
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" && tag == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				sub, ok := jsonFields(ft)
				if !ok {
					return nil, false
				}
				for k := range sub {
					out[k] = true
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = true
	}
	return out, true
}

// QueueLimitSet sets a concurrency limit of a queue (of limit.Kind, "" for
// the whole queue) at run time, for every client working it: it replaces
// the limit of that queue and kind the clients' configurations declare,
// and survives restarts, until QueueLimitDelete. Clients apply it at their
// next fetch: at once when they get notifications, within
// producer.LimitRefresh (10 s) otherwise. An invalid limit gives an error
// wrapping ErrInvalidConfig (ErrUnknownPartitionKey too for a key this
// client's workers' args lack), an invalid queue name one wrapping
// ErrInvalidQueue.
func (c *Client[TTx]) QueueLimitSet(ctx context.Context, queue string, limit ConcurrencyLimit) (*QueueLimit, error) {
	if err := validateQueueName(queue); err != nil {
		return nil, fmt.Errorf("set limit: %w: %w", ErrInvalidQueue, err)
	}
	if err := validateLimit(limit, c.config.Workers); err != nil {
		return nil, fmt.Errorf("set limit of queue %q: %w: %w", queue, ErrInvalidConfig, err)
	}
	row, err := c.driver.GetExecutor().LimitSet(ctx, &driver.LimitSetParams{Schema: c.config.Schema, Queue: queue, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("set limit of queue %q: %w", queue, err)
	}
	return queueLimit(row), nil
}

// QueueLimitDelete deletes the limit of a queue and kind ("" for the whole
// queue) set at run time, so the clients' configured limit applies again,
// and reports whether there was one.
func (c *Client[TTx]) QueueLimitDelete(ctx context.Context, queue, kind string) (bool, error) {
	if err := validateQueueName(queue); err != nil {
		return false, fmt.Errorf("delete limit: %w: %w", ErrInvalidQueue, err)
	}
	ok, err := c.driver.GetExecutor().LimitDelete(ctx, &driver.LimitDeleteParams{Schema: c.config.Schema, Queue: queue, Kind: kind})
	if err != nil {
		return false, fmt.Errorf("delete limit of queue %q kind %q: %w", queue, kind, err)
	}
	return ok, nil
}

// QueueLimitList lists the limits set at run time, of one queue or (queue
// "") of all, by queue and kind. Limits declared only in clients'
// configurations are not stored and not listed.
func (c *Client[TTx]) QueueLimitList(ctx context.Context, queue string) ([]*QueueLimit, error) {
	if queue != "" {
		if err := validateQueueName(queue); err != nil {
			return nil, fmt.Errorf("list limits: %w: %w", ErrInvalidQueue, err)
		}
	}
	rows, err := c.driver.GetExecutor().LimitGetMany(ctx, &driver.LimitGetManyParams{Schema: c.config.Schema, Queue: queue})
	if err != nil {
		return nil, fmt.Errorf("list limits: %w", err)
	}
	out := make([]*QueueLimit, len(rows))
	for i, r := range rows {
		out[i] = queueLimit(r)
	}
	return out, nil
}

func queueLimit(r *driver.LimitRow) *QueueLimit {
	return &QueueLimit{Queue: r.Queue, ConcurrencyLimit: r.Limit, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}
