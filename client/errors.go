package client

import (
	"errors"
	"time"

	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/internal/liveness"
	"github.com/millrace/millrace/millracetype"
)

// ErrNotFound is returned (wrapped) when a job or queue does not exist.
var ErrNotFound = millracetype.ErrNotFound

// Sentinel errors of invalid configuration and input; test with errors.Is.
var (
	// ErrInvalidConfig wraps every configuration error New returns.
	ErrInvalidConfig = errors.New("invalid client config")
	// ErrInvalidArgs wraps errors about an insert's args or options.
	ErrInvalidArgs = millracetype.ErrInvalidArgs
	// ErrNoQueues is returned when an insert-only client is asked to work.
	ErrNoQueues = errors.New("client has no queues configured: it can insert but not work jobs")
)

// JobCancel returns an error that, returned from Work, cancels the job: it
// is recorded as cancelled (a final state) and never retried. err explains
// why and is recorded as "JobCancelError: <err>".
func JobCancel(err error) error {
	if err == nil {
		err = errors.New("cancelled by worker")
	}
	return jobexec.NewJobCancelError(err)
}

// JobCancelError is the error JobCancel returns. errors.Is(err,
// &JobCancelError{}) is true for any cancel error, and Unwrap returns the
// reason given to JobCancel.
type JobCancelError = jobexec.JobCancelError

// JobSnooze returns an error that, returned from Work, runs the job again
// after d without using an attempt and without recording an error. d must
// not be negative; a snooze of 5 s or less makes the job available at once
// (with its run time d ahead), a longer one scheduled.
func JobSnooze(d time.Duration) error {
	return &JobSnoozeError{Duration: d}
}

// JobSnoozeError is the error JobSnooze returns; its field Duration is
// how long the job sleeps. errors.Is(err, &JobSnoozeError{}) is true for
// any snooze.
type JobSnoozeError = jobexec.JobSnoozeError

// ErrInvalidQueue wraps errors about a queue name given to the queue admin
// API (QueuePause, QueueResume, QueueGetWithCounts, QueueUpdate). For
// callers that test for ErrInvalidArgs, errors.Is(err, ErrInvalidArgs) is
// also true.
var ErrInvalidQueue error = invalidQueueError{}

type invalidQueueError struct{}

func (invalidQueueError) Error() string { return "invalid queue name" }

// Is makes ErrInvalidQueue an ErrInvalidArgs too.
func (invalidQueueError) Is(target error) bool { return target == ErrInvalidArgs }

// ErrClientIDInUse is wrapped by Start's error when a live client (another
// process heartbeating in millrace_client) holds the client's ID: two
// processes must never share an ID. A restart of the same process within
// HeartbeatTimeout is not an error: Start waits for the previous run's row
// to die (at most HeartbeatTimeout and two heartbeats).
var ErrClientIDInUse = liveness.ErrClientIDInUse
