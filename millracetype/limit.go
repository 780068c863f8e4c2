package millracetype

// ConcurrencyLimit bounds how many jobs of a queue (or of one kind in it)
// run at once. A zero number means no such bound; at least one of Global,
// Local and PerPartition must be set, and none may be negative.
type ConcurrencyLimit struct {
	// Kind limits only the queue's jobs of this kind; empty: every job of
	// the queue.
	Kind string
	// Global bounds the jobs running at once across every client working
	// the queue on the database.
	Global int
	// Local bounds the jobs running at once on each client.
	Local int
	// PerPartition bounds the jobs running at once, across every client,
	// in each partition: the jobs of one kind (PartitionByKind) and with
	// the same values of the args keys PartitionByArgs. Set it together
	// with PartitionByKind, PartitionByArgs or both.
	PerPartition int
	// PartitionByKind partitions by kind (only for a limit of the whole
	// queue: a kind's limit has one kind).
	PartitionByKind bool
	// PartitionByArgs partitions by the values of these top-level keys of
	// the job's args (compared as JSON values). A job whose args lack a key
	// or have null there goes to the default partition of that key, shared
	// by all such jobs.
	PartitionByArgs []string
}
