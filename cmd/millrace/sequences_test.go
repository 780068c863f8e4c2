package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testfixture"
)

type cliSeqArgs struct{}

func (cliSeqArgs) Kind() string { return "cli_seq" }

// TestSequencesCommand: millrace sequences list shows each sequence's head
// and waiting jobs; bad input is one line with exit 2.
func TestSequencesCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testfixture.New(t)
	c, err := client.New(db.Driver, &client.Config{Schema: db.Schema})
	if err != nil {
		t.Fatal(err)
	}
	var head int64
	for i, key := range []string{"acct 1", "acct 1", "acct 1", "b"} {
		r, err := c.Insert(ctx, cliSeqArgs{}, &client.InsertOpts{Queue: "ledger", Sequence: client.SequenceOpts{Key: key}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			head = r.Job.ID
		}
	}
	dbf := []string{"--database-url", testdb.AdminURL(t), "--schema", db.Schema}
	run := func(args ...string) (int, string, string) {
		t.Helper()
		return exe(t, append(args, dbf...)...)
	}
	code, out, errOut := run("sequences", "list")
	if code != 0 || !strings.Contains(out, "WAITING") || !strings.Contains(out, `ledger  "acct 1"`) || !strings.Contains(out, "available   2") {
		t.Fatalf("sequences list: %d %q\n%s", code, errOut, out)
	}
	code, out, _ = run("sequences", "list", "--queue", "ledger", "--json")
	var list []sequenceJSON
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 ||
		list[0] != (sequenceJSON{Queue: "ledger", Key: "acct 1", HeadID: head, HeadState: "available", Waiting: 2}) {
		t.Fatalf("sequences list --json: %d %s", code, out)
	}
	code, out, _ = run("sequences", "list", "--queue", "ledger", "--after", "acct 1", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Key != "b" {
		t.Fatalf("sequences list --after: %d %s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sequences", "list", "--limit", "0"}, "--limit 0"},
		{[]string{"sequences", "list", "--limit", "10001"}, "--limit 10001"},
		{[]string{"sequences", "list", "--after", "x"}, "After needs Queue"},
		{[]string{"sequences", "list", "--queue", "Bad Name"}, "queue name"},
	} {
		code, _, errOut := run(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line containing %q", tc.args, code, errOut, tc.want)
		}
	}
}
