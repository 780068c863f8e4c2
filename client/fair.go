package client

import (
	"fmt"
	"slices"

	"github.com/millrace/millrace/internal/producer"
)

// Fairness makes the partitions of a queue take turns at its workers
// (round robin), so that a tenant with a million queued jobs does not
// starve one with ten: every fetch takes a share of the free workers from
// each of the next partitions in turn, and the rest in the queue's usual
// order. A partition is the jobs of one kind (ByKind) and of one value of
// each of the args keys ByArgs; a job whose args lack a key, or have null
// there, is in that key's default partition, which all such jobs share.
//
// The set of partitions lives in the database (table
// millrace_fair_partition), found by the fetches themselves (from the
// queue's newest jobs and the jobs they take), so jobs inserted by any
// client, a River client included, take part; the order of turns is each
// client's own. A River client working the same queue is outside: it
// takes jobs in queue order. See "Fairness" in the README for costs and
// what it combines with.
type Fairness struct {
	// ByKind makes each kind of job a partition (with ByArgs, each kind
	// and value).
	ByKind bool
	// ByArgs are top-level args keys whose values make the partitions,
	// for example []string{"tenant_id"}; at most MaxFairnessKeys.
	ByArgs []string
}

// MaxFairnessKeys is how many args keys a queue may be fair by.
const MaxFairnessKeys = 8

// validateFairness checks a queue's Fairness and what it is combined
// with. With workers, each key must be a JSON field of some worker's
// args type (when those types are structs).
func (q QueueConfig) validateFairness(workers *Workers) error {
	f := q.Fairness
	if f == nil {
		return nil
	}
	if !f.ByKind && len(f.ByArgs) == 0 {
		return fmt.Errorf("Fairness: neither ByKind nor ByArgs is set: fairness needs a partition key")
	}
	if len(f.ByArgs) > MaxFairnessKeys {
		return fmt.Errorf("Fairness: %d ByArgs keys, at most %d", len(f.ByArgs), MaxFairnessKeys)
	}
	for i, k := range f.ByArgs {
		if k == "" || len(k) > maxLimitKeyLen {
			return fmt.Errorf("Fairness: ByArgs key %q must be 1..%d bytes", k, maxLimitKeyLen)
		}
		if slices.Contains(f.ByArgs[:i], k) {
			return fmt.Errorf("Fairness: ByArgs key %q appears twice", k)
		}
	}
	for _, l := range q.Limits {
		if l.Kind != "" || l.PerPartition > 0 {
			return fmt.Errorf("Fairness cannot combine with a concurrency limit by kind or partition (they choose the jobs themselves); Global and Local limits of the whole queue combine")
		}
	}
	for _, l := range q.RateLimits {
		if l.Kind != "" || l.PartitionByKind || len(l.PartitionByArgs) > 0 {
			return fmt.Errorf("Fairness cannot combine with a rate limit by kind or partition (they choose the jobs themselves); rate limits of the whole queue combine")
		}
	}
	if workers != nil && len(f.ByArgs) > 0 {
		return checkPartitionKeys("Fairness", ConcurrencyLimit{PartitionByArgs: f.ByArgs}, workers)
	}
	return nil
}

// clone copies f, so that the caller's later changes to it do not reach
// a validated configuration.
func (f *Fairness) clone() *Fairness {
	if f == nil {
		return nil
	}
	return &Fairness{ByKind: f.ByKind, ByArgs: slices.Clone(f.ByArgs)}
}

// fairFetch is the queue's fair strategy, nil when it is not fair.
func (q QueueConfig) fairFetch(schema, name string) producer.FetchStrategy {
	if q.Fairness == nil {
		return nil
	}
	return producer.NewFairFetch(schema, name, q.Fairness.ByArgs, q.Fairness.ByKind)
}
