package main

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

// TestJobsManyCommands: the filter flags of `jobs list` and the --many
// forms of `jobs delete|cancel|retry`, through the built binary.
func TestJobsManyCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	url := testdb.AdminURL(t)
	c, err := client.New[pgx.Tx](db.Driver, &client.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	var red, blue []int64
	for i := range 5 {
		tag, dst := "red", &red
		if i%2 == 1 {
			tag, dst = "blue", &blue
		}
		res, err := c.Insert(ctx, cliArgs{N: i}, &client.InsertOpts{Tags: []string{tag}, Priority: 1 + i%2, ScheduledAt: later})
		if err != nil {
			t.Fatal(err)
		}
		*dst = append(*dst, res.Job.ID)
	}
	running := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "cli_job", State: millracetype.JobStateRunning, Attempt: 1,
		Tags: []string{"red"}})
	dbf := []string{"--database-url", url, "--schema", db.Schema}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return exe(t, append(args, dbf...)...)
	}
	listIDs := func(args ...string) []int64 {
		t.Helper()
		code, out, errOut := run(append([]string{"jobs", "list", "--json"}, args...)...)
		var page struct {
			Jobs []struct {
				ID int64 `json:"id"`
			} `json:"jobs"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &page) != nil {
			t.Fatalf("jobs list %v: %d %s %s", args, code, out, errOut)
		}
		var ids []int64
		for _, j := range page.Jobs {
			ids = append(ids, j.ID)
		}
		slices.Sort(ids)
		return ids
	}

	if got := listIDs("--tag", "blue"); !slices.Equal(got, blue) {
		t.Errorf("list --tag blue: %v, want %v", got, blue)
	}
	if got := listIDs("--priority", "1", "--state", "scheduled"); !slices.Equal(got, red) {
		t.Errorf("list --priority 1 --state scheduled: %v, want %v", got, red)
	}
	if got := listIDs("--created-before", "2000-01-01T00:00:00Z"); len(got) != 0 {
		t.Errorf("list --created-before 2000: %v", got)
	}

	// Cancel the red ones in batches of 2: the running one is asked to stop.
	code, out, errOut := run("jobs", "cancel", "--many", "--tag", "red", "--batch", "2", "--json")
	var res struct {
		Count int     `json:"count"`
		IDs   []int64 `json:"ids"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Count != 4 {
		t.Fatalf("jobs cancel --many: %d %s %s", code, out, errOut)
	}
	if got := listIDs("--state", "cancelled"); !slices.Equal(got, red) {
		t.Errorf("cancelled jobs %v, want %v", got, red)
	}
	if job := db.Job(t, running.ID); job.State != millracetype.JobStateRunning || !strings.Contains(string(job.Metadata), "cancel_attempted_at") {
		t.Errorf("running job after cancel --many: %s %s", job.State, job.Metadata)
	}
	// Retry them, then delete everything but the running one.
	code, out, _ = run("jobs", "retry", "--many", "--state", "cancelled")
	if code != 0 || out != "retried 3 jobs\n" {
		t.Fatalf("jobs retry --many: %d %q", code, out)
	}
	code, out, _ = run("jobs", "delete", "--many", "--kind", "cli_job")
	if code != 0 || out != "deleted 5 jobs\n" {
		t.Fatalf("jobs delete --many: %d %q", code, out)
	}
	if got := listIDs(); !slices.Equal(got, []int64{running.ID}) {
		t.Errorf("jobs left %v, want only the running one", got)
	}

	// Bad input: one line on stderr, usage mistakes exit 2.
	missing := strconv.FormatInt(running.ID+1000, 10)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"jobs", "delete", "--many"}, 2, "--many needs at least one filter"},
		{[]string{"jobs", "delete", "--many", "--state", "running"}, 2, "running jobs are never deleted"},
		{[]string{"jobs", "delete", "5", "--kind", "x"}, 2, "filter flags and --batch need --many"},
		{[]string{"jobs", "delete", "--many", "5", "--kind", "x"}, 2, "not a job ID"},
		{[]string{"jobs", "cancel"}, 2, "give a job ID"},
		{[]string{"jobs", "retry", "--many", "--kind", "x", "--batch", "0"}, 2, "--batch 0 out of range"},
		{[]string{"jobs", "retry", "--many", "--priority", "9"}, 2, "priority 9 out of range 1..4"},
		{[]string{"jobs", "list", "--metadata", "[1]"}, 2, "metadata filter must be a JSON object"},
		{[]string{"jobs", "list", "--tag", "red,,blue"}, 2, "empty string in TagsAny"},
		{[]string{"jobs", "list", "--created-from", "yesterday"}, 2, "not an RFC 3339 time"},
		{[]string{"jobs", "list", "--created-from", "2026-01-02T00:00:00Z", "--created-before", "2026-01-01T00:00:00Z"}, 2, "range is empty or inverted"},
		{[]string{"jobs", "cancel", "--many", "--id", missing}, 1, "jobs " + missing + ": not found"},
	} {
		code, _, errOut := run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
