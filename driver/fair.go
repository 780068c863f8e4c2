package driver

import "time"

// Fairness within a queue (table millrace_fair_partition of migration
// line millrace, and the fetch of a fair queue).

// MaxFairShares is the most partitions one JobFairLock takes jobs from.
const MaxFairShares = 32

// FairPartition is a row of millrace_fair_partition: the jobs of a queue
// of one kind (Kind "" when the queue is not fair by kind) whose args hold
// the values of Args, a JSON object of the partition keys in which a
// JSON null stands for a key missing (or null) in the job.
type FairPartition struct {
	Kind string
	Args []byte
	// EmptySince is when a fetch first found the partition without
	// available jobs (nil: it had some at its last read).
	EmptySince *time.Time
}

// FairPartitionListParams reads a fair queue's partitions in (kind,
// args) order, as Postgres orders text and jsonb.
type FairPartitionListParams struct {
	Schema string
	Queue  string
	// After, when not nil, is the last partition of the previous read:
	// only the rows after it are read.
	After *FairPartition
	// Limit is how many rows to read at most.
	Limit int
	// Kinds, when not empty, skips the partitions of other kinds (those
	// of a queue fair by kind; rows of kind "" are read).
	Kinds []string
}

// FairPartitionDiscoverParams registers the partitions of jobs of a
// fair queue: those of the Newest available jobs of the queue (last in
// fetch order), and those of the jobs of IDs.
type FairPartitionDiscoverParams struct {
	Schema string
	Queue  string
	// Keys are the args keys whose values make the partition.
	Keys []string
	// ByKind adds the job's kind to the partition.
	ByKind bool
	// Newest is how many of the queue's last available jobs to read.
	Newest int
	// IDs are jobs of the queue whose partitions to register.
	IDs []int64
}

// FairShare is one partition's share of a fair fetch.
type FairShare struct {
	// Kind and Args name the partition, as FairPartition does.
	Kind string
	Args []byte
	// Max is how many of its jobs to take at most.
	Max int
}

// JobFairLockParams locks the jobs of a fair fetch.
type JobFairLockParams struct {
	Schema string
	Queue  string
	// Kinds, when not empty, are the only kinds taken.
	Kinds []string
	// Shares are the partitions to take jobs from, at most MaxFairShares.
	Shares []*FairShare
	// Max is how many jobs to lock in all: the shares' jobs, then, up to
	// Max, jobs of the queue in plain fetch order.
	Max int
}

// FairLocked is a job locked by JobFairLock.
type FairLocked struct {
	ID       int64
	Priority int
	// Share is the index in JobFairLockParams.Shares of the partition the
	// job was taken for, -1 for plain fetch order.
	Share int
	// Rank is the job's place in its share's fetch order, from 0.
	Rank int
}

// FairPartitionUpdateParams records what a fair fetch found.
type FairPartitionUpdateParams struct {
	Schema string
	Queue  string
	// Found are partitions that had available jobs: their EmptySince is
	// cleared.
	Found []*FairPartition
	// Empty are partitions that had none: their EmptySince is set when
	// unset, and a row whose EmptySince is older than Grace, and whose
	// partition has no job of the queue left to run (available,
	// scheduled, retryable, running or pending), is deleted.
	Empty []*FairPartition
	Grace time.Duration
}
