package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
)

// TestLimitsCommands: millrace limits set, list and delete, on the
// table the clients read, and bad input as one line with exit 2.
func TestLimitsCommands(t *testing.T) {
	t.Parallel()
	db := testfixture.New(t)
	url := testdb.AdminURL(t)
	dbf := []string{"--database-url", url, "--schema", db.Schema}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return exe(t, append(args, dbf...)...)
	}
	code, out, errOut := run("limits", "set", "sync", "--kind", "sync_account", "--global", "50", "--per-partition", "3",
		"--partition-by-args", "customer_id,region")
	if code != 0 || out != "limit of queue sync kind sync_account set\n" {
		t.Fatalf("limits set: %d %q %q", code, out, errOut)
	}
	code, out, _ = run("limits", "set", "mail", "--local", "2", "--json")
	if code != 0 || !strings.Contains(out, `"local": 2`) {
		t.Fatalf("limits set --json: %d %s", code, out)
	}
	rows, err := db.Exec().LimitGetMany(context.Background(), &driver.LimitGetManyParams{Schema: db.Schema})
	if err != nil || len(rows) != 2 || rows[1].Queue != "sync" || rows[1].Limit.Global != 50 || rows[1].Limit.PerPartition != 3 ||
		strings.Join(rows[1].Limit.PartitionByArgs, ",") != "customer_id,region" || rows[0].Limit.Local != 2 {
		t.Fatalf("table after set: %v %+v", err, rows)
	}
	code, out, _ = run("limits", "list")
	if code != 0 || !strings.Contains(out, "PER_PARTITION") || !strings.Contains(out, "mail   *             -       2") ||
		!strings.Contains(out, "customer_id,region") {
		t.Fatalf("limits list: %d\n%s", code, out)
	}
	code, out, _ = run("limits", "list", "--queue", "sync", "--json")
	var list []limitJSON
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Kind != "sync_account" {
		t.Fatalf("limits list --json: %d %s", code, out)
	}
	code, out, _ = run("limits", "delete", "sync", "--kind", "sync_account")
	if code != 0 || out != "limit of queue sync kind sync_account deleted\n" {
		t.Fatalf("limits delete: %d %q", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"limits", "delete", "sync", "--kind", "sync_account"}, 1, `limit of queue "sync" kind sync_account not found`},
		{[]string{"limits", "set", "mail", "--global", "-1"}, 2, "Global -1 is negative"},
		{[]string{"limits", "set", "mail"}, 2, "are all 0"},
		{[]string{"limits", "set", "mail", "--per-partition", "2"}, 2, "needs PartitionByKind or PartitionByArgs"},
		{[]string{"limits", "set", "Bad Name", "--global", "1"}, 2, "queue name"},
		{[]string{"limits", "list", "--queue", "Bad Name"}, 2, "queue name"},
	} {
		code, _, errOut := run(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line containing %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
