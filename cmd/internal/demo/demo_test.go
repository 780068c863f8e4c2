package demo

import (
	"testing"
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
