package demo

import (
	"strings"
	"testing"

	"github.com/millrace/millrace/millracetype"
)

// TestOnTheHour checks how the demo tells its periodic job's hourly runs
// from the ones a new leader adds, by the run time in the job's metadata.
func TestOnTheHour(t *testing.T) {
	for _, tc := range []struct {
		meta   string
		hourly bool
	}{
		{`{"periodic":true,"millrace:periodic_run_at":"2026-12-06T03:00:00Z"}`, true},
		{`{"millrace:periodic_run_at":"2026-12-06T04:00:00+01:00"}`, true}, // 03:00 UTC
		{`{"millrace:periodic_run_at":"2026-12-06T02:59:54.731045Z"}`, false},
		{`{"millrace:periodic_run_at":"2026-12-06T03:00:00.000000001Z"}`, false},
		{`{"millrace:periodic_run_at":"2026-12-06T03:30:00Z"}`, false},
	} {
		hourly, err := onTheHour([]byte(tc.meta))
		if err != nil || hourly != tc.hourly {
			t.Errorf("onTheHour(%s) = %v, %v; want %v", tc.meta, hourly, err, tc.hourly)
		}
	}
	for _, bad := range []string{`{"periodic":true}`, `{"millrace:periodic_run_at":"03:00"}`, `{"millrace:periodic_run_at":1}`, `not json`} {
		if _, err := onTheHour([]byte(bad)); err == nil {
			t.Errorf("onTheHour(%s): no error", bad)
		}
	}
}

// TestUnfinished: the demo's final check accepts runs of the periodic job
// that no worker ran and that wait for the next client, and nothing else
// left unfinished.
func TestUnfinished(t *testing.T) {
	type counts = map[millracetype.JobState]int
	for _, tc := range []struct {
		name          string
		counts        counts
		ticks, worked int
		waiting       int
		fail          bool
	}{
		{"all completed", counts{millracetype.JobStateCompleted: 12}, 2, 2, 0, false},
		{"an hourly run came due at the stop", counts{millracetype.JobStateCompleted: 12, millracetype.JobStateAvailable: 1}, 3, 2, 1, false},
		{"a late leader's run, scheduled", counts{millracetype.JobStateCompleted: 12, millracetype.JobStateScheduled: 1}, 2, 1, 1, false},
		{"a job left available, every run worked", counts{millracetype.JobStateCompleted: 12, millracetype.JobStateAvailable: 1}, 2, 2, 0, true},
		{"a job and a run left", counts{millracetype.JobStateCompleted: 12, millracetype.JobStateAvailable: 2}, 3, 2, 0, true},
		{"a run left running", counts{millracetype.JobStateCompleted: 12, millracetype.JobStateRunning: 1}, 3, 2, 0, true},
		{"a job discarded", counts{millracetype.JobStateCompleted: 12, millracetype.JobStateDiscarded: 1}, 3, 2, 0, true},
		{"a job retryable", counts{millracetype.JobStateCompleted: 12, millracetype.JobStateRetryable: 1}, 2, 2, 0, true},
	} {
		waiting, err := unfinished(tc.counts, tc.ticks, tc.worked)
		if tc.fail {
			if err == nil || !strings.Contains(err.Error(), "did not complete") {
				t.Errorf("%s: %d, %v; want the demo to fail", tc.name, waiting, err)
			}
			continue
		}
		if err != nil || waiting != tc.waiting {
			t.Errorf("%s: %d, %v; want %d waiting", tc.name, waiting, err, tc.waiting)
		}
	}
}
