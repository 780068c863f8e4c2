package main

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/millracetype"
)

func TestJobLogsCommand(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	url := testdb.AdminURL(t)
	insert := func(metadata string) string {
		t.Helper()
		job := db.InsertJob(t, &driver.JobInsertFullParams{Kind: "cli_logged", Args: []byte(`{}`),
			State: millracetype.JobStateAvailable, Metadata: []byte(metadata)})
		return strconv.FormatInt(job.ID, 10)
	}
	logged := insert(`{"river:log": [{"attempt": 1, "log": "level=INFO msg=first\n"}, {"attempt": 2, "log": "level=WARN msg=second"}]}`)
	quiet := insert(`{}`)
	malformed := insert(`{"river:log": "oops"}`)
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return exe(t, append(args, "--database-url", url, "--schema", db.Schema)...)
	}

	code, out, errOut := run("jobs", "logs", logged)
	want := "--- job " + logged + " (cli_logged) attempt 1\nlevel=INFO msg=first\n" +
		"--- job " + logged + " (cli_logged) attempt 2\nlevel=WARN msg=second\n"
	if code != 0 || out != want {
		t.Errorf("jobs logs: exit %d, stdout\n%s\nwant\n%s\nstderr %s", code, out, want, errOut)
	}
	code, out, _ = run("jobs", "logs", logged, "--attempt", "2", "--json")
	var res struct {
		JobID int64                `json:"job_id"`
		Kind  string               `json:"kind"`
		Logs  []client.JobLogEntry `json:"logs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || strconv.FormatInt(res.JobID, 10) != logged ||
		res.Kind != "cli_logged" || !slices.Equal(res.Logs, []client.JobLogEntry{{Attempt: 2, Log: "level=WARN msg=second"}}) {
		t.Errorf("jobs logs --attempt 2 --json: exit %d\n%s", code, out)
	}
	code, out, _ = run("jobs", "logs", quiet)
	if code != 0 || !strings.Contains(out, "has no logs") {
		t.Errorf("jobs logs of a job without logs: exit %d %q", code, out)
	}
	code, out, _ = run("jobs", "logs", quiet, "--json")
	if code != 0 || !strings.Contains(out, `"logs": []`) {
		t.Errorf("jobs logs --json of a job without logs: exit %d %q", code, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"jobs", "logs", "999999"}, 1, "job 999999 not found"},
		{[]string{"jobs", "logs", "x1"}, 2, `invalid job ID "x1"`},
		{[]string{"jobs", "logs", logged, "--attempt", "-1"}, 2, "--attempt -1"},
		{[]string{"jobs", "logs"}, 2, "accepts 1 arg"},
		{[]string{"jobs", "logs", malformed}, 1, "does not hold job logs"},
	} {
		code, _, errOut := run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
