package millracetype

// QueueJobCounts are how many jobs of a queue are in each state that is not
// final. Finished jobs (completed, cancelled, discarded) are not counted:
// there may be millions of them, and they are not work still to do.
type QueueJobCounts struct {
	// Available jobs wait for a free worker (some may be due a few seconds
	// from now).
	Available int64
	// Pending jobs are on hold until moved from outside.
	Pending int64
	// Retryable jobs failed and wait for their next attempt.
	Retryable int64
	// Running jobs are being worked by some client.
	Running int64
	// Scheduled jobs wait for their scheduled time.
	Scheduled int64
}

// QueueWithCounts is a queue's row and the counts of its jobs, read
// together in one statement.
type QueueWithCounts struct {
	Queue
	// Counts are the queue's jobs by state, as of the read.
	Counts QueueJobCounts
}
