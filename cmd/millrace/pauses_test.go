package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
)

// TestPausesCommands: millrace pauses set, list and delete, on the table
// the clients read, and bad input as one line with exit 2.
func TestPausesCommands(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	url := testdb.AdminURL(t)
	dbf := []string{"--database-url", url, "--schema", db.Schema}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return exe(t, append(args, dbf...)...)
	}
	code, out, errOut := run("pauses", "set", "default", "--for", "1h", "--args", `{"token":"a"}`)
	if code != 0 || !strings.HasPrefix(out, "queue default paused until ") {
		t.Fatalf("pauses set: %d %q %q", code, out, errOut)
	}
	until := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	code, out, _ = run("pauses", "set", "mail", "--kind", "send_email", "--until", until.Format(time.RFC3339), "--json")
	var got pauseJSON
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Kind != "send_email" || !got.Until.Equal(until) || string(got.Args) != "{}" {
		t.Fatalf("pauses set --json: %d %s", code, out)
	}
	rows, err := db.Exec().PauseGetMany(context.Background(), &driver.PauseGetManyParams{Schema: db.Schema})
	if err != nil || len(rows) != 2 || rows[0].Queue != "default" || string(rows[0].Args) != `{"token": "a"}` ||
		rows[0].Until.Before(time.Now().Add(59*time.Minute)) || rows[1].Queue != "mail" {
		t.Fatalf("table after set: %v %+v", err, rows)
	}
	code, out, _ = run("pauses", "list")
	if code != 0 || !strings.Contains(out, "QUEUE") || !strings.Contains(out, `default  *           {"token": "a"}`) {
		t.Fatalf("pauses list: %d\n%s", code, out)
	}
	code, out, _ = run("pauses", "list", "--queue", "mail", "--json")
	var list []pauseJSON
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Kind != "send_email" {
		t.Fatalf("pauses list --json: %d %s", code, out)
	}
	code, out, _ = run("pauses", "delete", "default", "--args", `{"token": "a"}`)
	if code != 0 || out != "pause of queue default deleted\n" {
		t.Fatalf("pauses delete: %d %q", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"pauses", "delete", "default", "--args", `{"token":"a"}`}, 1, "no pause of queue"},
		{[]string{"pauses", "set", "default"}, 2, "one of --for and --until"},
		{[]string{"pauses", "set", "default", "--for", "1m", "--until", until.Format(time.RFC3339)}, 2, "one of --for and --until"},
		{[]string{"pauses", "set", "default", "--until", "tomorrow"}, 2, "--until"},
		{[]string{"pauses", "set", "default", "--for", "-1m"}, 2, "not within"},
		{[]string{"pauses", "set", "default", "--for", "1m", "--args", "[1]"}, 2, "JSON object"},
		{[]string{"pauses", "set", "Bad Name", "--for", "1m"}, 2, "queue name"},
		{[]string{"pauses", "list", "--queue", "Bad Name"}, 2, "queue name"},
	} {
		code, _, errOut := run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
