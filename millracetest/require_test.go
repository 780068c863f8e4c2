package millracetest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/millracetest"
	"github.com/millrace/millrace/millracetype"
)

// TestRequireInsertedMatchesEveryOption inserts one job with every option
// set, finds it with every expectation set, and then shows that each
// expectation, made wrong alone, fails with a message naming the field,
// what was wanted and what the job has.
func TestRequireInsertedMatchesEveryOption(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	at := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	id := f.insert(t, emailArgs{To: "ada@example.com", Subject: "hi"}, &client.InsertOpts{
		Queue:       "mail",
		Priority:    2,
		MaxAttempts: 5,
		ScheduledAt: at,
		Tags:        []string{"welcome", "vip"},
		Metadata:    []byte(`{"tenant": 7, "source": {"app": "web", "v": [1, 2]}}`),
		UniqueOpts:  client.UniqueOpts{ByArgs: true},
	})

	good := millracetest.RequireInsertedOpts{
		Schema:            f.db.Schema,
		Queue:             "mail",
		Priority:          2,
		MaxAttempts:       5,
		State:             millracetype.JobStateScheduled,
		ScheduledAt:       at.Add(time.Second),
		ScheduledAtWithin: 2 * time.Second,
		ScheduledFrom:     at.Add(-time.Minute),
		ScheduledTo:       at,
		Tags:              []string{"vip", "welcome"},
		Metadata:          []byte(`{"tenant": 7.0, "source": {"v": [2]}}`),
		Unique:            true,
		UniqueStates: []millracetype.JobState{
			millracetype.JobStateAvailable, millracetype.JobStateCompleted, millracetype.JobStatePending,
			millracetype.JobStateRetryable, millracetype.JobStateRunning, millracetype.JobStateScheduled,
		},
		MatchArgs: true,
	}
	var job *client.Job[emailArgs]
	mustPass(t, func(tb testing.TB) {
		job = millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{To: "ada@example.com", Subject: "hi"}, &good)
	})
	if job == nil || job.ID != id || job.Args.To != "ada@example.com" || job.Args.Subject != "hi" || job.Queue != "mail" {
		t.Fatalf("RequireInserted returned %+v, want job %d with its args decoded", job, id)
	}
	// Only the kind counts by default.
	mustPass(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{To: "someone else"}, &millracetest.RequireInsertedOpts{Schema: f.db.Schema})
	})

	tests := []struct {
		name  string
		args  emailArgs
		wrong func(o *millracetest.RequireInsertedOpts)
		want  string
	}{
		{"queue", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.Queue = "default" },
			`queue: want "default", got "mail"`},
		{"priority", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.Priority = 1 },
			"priority: want 1, got 2"},
		{"max attempts", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.MaxAttempts = 25 },
			"max_attempts: want 25, got 5"},
		{"state", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.State = millracetype.JobStateAvailable },
			"state: want available, got scheduled"},
		{"scheduled at", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.ScheduledAtWithin = 500 * time.Millisecond },
			"scheduled_at: want " + at.Add(time.Second).UTC().Format(time.RFC3339Nano) + " ± 500ms, got " +
				at.UTC().Format(time.RFC3339Nano) + " (off by -1s)"},
		{"scheduled at exactly", emailArgs{}, func(o *millracetest.RequireInsertedOpts) {
			o.ScheduledAt, o.ScheduledAtWithin = at.Add(2*time.Microsecond), 0
		}, "± 1µs, got"},
		{"scheduled window", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.ScheduledTo = at.Add(-time.Nanosecond * 1000) },
			"scheduled_at: want in [" + at.Add(-time.Minute).UTC().Format(time.RFC3339Nano) + ", " +
				at.Add(-time.Microsecond).UTC().Format(time.RFC3339Nano) + "], got " + at.UTC().Format(time.RFC3339Nano)},
		{"scheduled from only", emailArgs{}, func(o *millracetest.RequireInsertedOpts) {
			o.ScheduledFrom, o.ScheduledTo = at.Add(time.Microsecond), time.Time{}
		}, ", …], got"},
		{"tags", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.Tags = []string{"welcome"} },
			`tags: want ["welcome"], got ["welcome" "vip"]`},
		{"no tags", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.Tags = []string{} },
			`tags: want [], got ["welcome" "vip"]`},
		{"metadata", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.Metadata = []byte(`{"source": {"app": "ios"}}`) },
			`metadata: want containing {"source":{"app":"ios"}}, got {"source":{"v":[1,2],"app":"web"},"tenant":7}`},
		{"metadata array", emailArgs{}, func(o *millracetest.RequireInsertedOpts) { o.Metadata = []byte(`{"source": {"v": [3]}}`) },
			`metadata: want containing {"source":{"v":[3]}}`},
		{"unique states", emailArgs{}, func(o *millracetest.RequireInsertedOpts) {
			o.UniqueStates = []millracetype.JobState{millracetype.JobStateAvailable}
		}, "unique_states: want [available], got [available completed pending retryable running scheduled]"},
		{"args", emailArgs{To: "bob@example.com", Subject: "hi"}, nil,
			`args: want {"to":"bob@example.com","subject":"hi"}, got {"to":"ada@example.com","subject":"hi"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := good
			if tt.wrong != nil {
				tt.wrong(&opts)
			}
			args := tt.args
			if args == (emailArgs{}) {
				args = emailArgs{To: "ada@example.com", Subject: "hi"}
			}
			msg := mustFail(t, func(tb testing.TB) {
				millracetest.RequireInserted(ctx, tb, f.db.Driver, args, &opts)
			}, "RequireInserted: none of the 1 job of kind \"email\" in schema \""+f.db.Schema+"\" matches",
				fmt.Sprintf("job %d (kind \"email\", state scheduled, queue \"mail\", priority 2", id), tt.want)
			// Only the wrong field is listed.
			if n := strings.Count(msg, ": want "); n != 1 {
				t.Errorf("message lists %d differing fields, want 1:\n%s", n, msg)
			}
		})
	}
}

// TestRequireInsertedUniqueNeedsAKey shows Unique failing on a job
// inserted without UniqueOpts.
func TestRequireInsertedUniqueNeedsAKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.insert(t, emailArgs{To: "a"}, nil)
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{Schema: f.db.Schema, Unique: true})
	}, "unique: want a unique key, got none")
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{
			Schema: f.db.Schema, UniqueStates: []millracetype.JobState{millracetype.JobStateAvailable},
		})
	}, "unique: want a unique key, got none")
}

// TestRequireInsertedNoJobOfKind shows the two messages for a kind that
// was never inserted: an empty schema, and one holding other kinds.
func TestRequireInsertedNoJobOfKind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	opts := &millracetest.RequireInsertedOpts{Schema: f.db.Schema}
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, opts)
	}, `RequireInserted: no job of kind "email" was inserted in schema "`+f.db.Schema+`"; it holds no jobs at all`)

	f.insert(t, smsArgs{Number: "1"}, nil)
	for i := range 12 {
		f.insert(t, namedArgs{kind: fmt.Sprintf("other_%02d", i)}, nil)
	}
	f.insert(t, smsArgs{Number: "2"}, nil)
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, opts)
	}, `no job of kind "email" was inserted`,
		`; kinds found among the newest jobs, most recent first: "sms", "other_11", "other_10", "other_09", "other_08", "other_07", "other_06", "other_05", "other_04", "other_03"`)

	g := newFixture(t)
	g.insert(t, smsArgs{Number: "1"}, nil)
	g.insert(t, namedArgs{kind: "push"}, nil)
	g.insert(t, smsArgs{Number: "2"}, nil)
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, g.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{Schema: g.db.Schema})
	}, `; it holds 3 jobs of other kinds, most recent first: "sms", "push"`)
}

// TestRequireInsertedSeveralMatch shows that two matching jobs fail
// RequireInserted, and that an option telling them apart passes.
func TestRequireInsertedSeveralMatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	a := f.insert(t, emailArgs{To: "a"}, nil)
	b := f.insert(t, emailArgs{To: "b"}, &client.InsertOpts{Queue: "mail"})
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{Schema: f.db.Schema})
	}, fmt.Sprintf(`2 jobs of kind "email" in schema %q match (ids %d, %d), want exactly one`, f.db.Schema, a, b), "RequireManyInserted")
	var job *client.Job[emailArgs]
	mustPass(t, func(tb testing.TB) {
		job = millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{Schema: f.db.Schema, Queue: "mail"})
	})
	if job.ID != b || job.Args.To != "b" {
		t.Fatalf("got job %d with args %+v, want job %d to b", job.ID, job.Args, b)
	}
	mustPass(t, func(tb testing.TB) {
		job = millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{To: "a"}, &millracetest.RequireInsertedOpts{Schema: f.db.Schema, MatchArgs: true})
	})
	if job.ID != a {
		t.Fatalf("MatchArgs found job %d, want %d", job.ID, a)
	}
}

// TestRequireInsertedNearestJobs checks which jobs a failure shows and in
// what order: fewest differing fields first, then newest, five at most.
func TestRequireInsertedNearestJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	var ids []int64
	for i, o := range []client.InsertOpts{
		{Queue: "a", Priority: 1}, // 2 differences
		{Queue: "x", Priority: 1}, // 1
		{Queue: "b", Priority: 2}, // 2
		{Queue: "c", Priority: 4}, // 2
		{Queue: "x", Priority: 2}, // 1
		{Queue: "d", Priority: 1}, // 2
		{Queue: "e", Priority: 1}, // 2
	} {
		ids = append(ids, f.insert(t, emailArgs{To: fmt.Sprint(i)}, &o))
	}
	msg := mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{Schema: f.db.Schema, Queue: "x", Priority: 3})
	}, "none of the 7 jobs of kind \"email\"", "(and 2 more)")
	var shown []int64
	for _, line := range strings.Split(msg, "\n") {
		var id int64
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "job %d ", &id); err == nil {
			shown = append(shown, id)
		}
	}
	want := []int64{ids[4], ids[1], ids[6], ids[5], ids[3]}
	if fmt.Sprint(shown) != fmt.Sprint(want) {
		t.Fatalf("the failure shows jobs %v, want %v:\n%s", shown, want, msg)
	}
	wantLines := fmt.Sprintf("job %d (kind \"email\", state available, queue \"x\", priority 2, args {\"to\":\"4\"}):\n      priority: want 3, got 2\n", ids[4])
	if !strings.Contains(msg, wantLines) {
		t.Errorf("message lacks\n%s\nin:\n%s", wantLines, msg)
	}
}

// TestRequireInsertedTx checks the Tx variants: they see the
// transaction's uncommitted jobs, the pool does not, a rolled-back job is
// gone, and the transaction stays usable after an assertion.
func TestRequireInsertedTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	opts := &millracetest.RequireInsertedOpts{Schema: f.db.Schema}
	txOnly := pgxv5.New(nil)

	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // rolled back or committed below
	res, err := f.client.InsertTx(ctx, tx, emailArgs{To: "tx"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var job *client.Job[emailArgs]
	mustPass(t, func(tb testing.TB) { job = millracetest.RequireInsertedTx(ctx, tb, txOnly, tx, emailArgs{}, opts) })
	if job.ID != res.Job.ID || job.Args.To != "tx" {
		t.Fatalf("RequireInsertedTx returned job %d %+v, want %d", job.ID, job.Args, res.Job.ID)
	}
	mustFail(t, func(tb testing.TB) { millracetest.RequireNotInsertedTx(ctx, tb, f.db.Driver, tx, emailArgs{}, opts) },
		"RequireNotInsertedTx: found 1 job of kind \"email\" in schema")
	mustPass(t, func(tb testing.TB) {
		millracetest.RequireManyInsertedTx(ctx, tb, txOnly, tx, []millracetest.ExpectedJob{{Args: emailArgs{}}},
			&millracetest.RequireManyInsertedOpts{Schema: f.db.Schema})
	})
	// Not committed: the pool sees nothing.
	mustFail(t, func(tb testing.TB) { millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, opts) },
		`no job of kind "email" was inserted`)
	mustPass(t, func(tb testing.TB) { millracetest.RequireNotInserted(ctx, tb, f.db.Driver, emailArgs{}, opts) })

	// A failing query inside the transaction (a schema that does not
	// exist) is rolled back with the assertion's savepoint: the
	// transaction goes on.
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInsertedTx(ctx, tb, txOnly, tx, emailArgs{}, &millracetest.RequireInsertedOpts{Schema: "no_such_schema"})
	}, `RequireInsertedTx: list jobs of kinds ["email"] in schema "no_such_schema"`)
	if _, err := f.client.InsertTx(ctx, tx, smsArgs{Number: "1"}, nil); err != nil {
		t.Fatalf("the transaction is not usable after a failed assertion: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// Rolled back: gone, in a new transaction as on the pool.
	tx2, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Rollback(ctx) //nolint:errcheck // read only
	mustFail(t, func(tb testing.TB) { millracetest.RequireInsertedTx(ctx, tb, txOnly, tx2, emailArgs{}, opts) },
		`RequireInsertedTx: no job of kind "email" was inserted`, "it holds no jobs at all")
	mustPass(t, func(tb testing.TB) { millracetest.RequireNotInsertedTx(ctx, tb, txOnly, tx2, smsArgs{}, opts) })
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireManyInsertedTx(ctx, tb, txOnly, tx2, []millracetest.ExpectedJob{{Args: emailArgs{}}},
			&millracetest.RequireManyInsertedOpts{Schema: f.db.Schema})
	}, "[0] want a job of kind \"email\": missing")
}

// TestRequireNotInserted checks both outcomes, with and without options.
func TestRequireNotInserted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	opts := &millracetest.RequireInsertedOpts{Schema: f.db.Schema}
	mustPass(t, func(tb testing.TB) { millracetest.RequireNotInserted(ctx, tb, f.db.Driver, emailArgs{}, opts) })
	f.insert(t, smsArgs{Number: "1"}, nil)
	mustPass(t, func(tb testing.TB) { millracetest.RequireNotInserted(ctx, tb, f.db.Driver, emailArgs{}, opts) })

	first := f.insert(t, emailArgs{To: "a"}, nil)
	mustFail(t, func(tb testing.TB) { millracetest.RequireNotInserted(ctx, tb, f.db.Driver, emailArgs{}, opts) },
		fmt.Sprintf(`RequireNotInserted: found 1 job of kind "email" in schema %q, want none (newest first):`, f.db.Schema),
		fmt.Sprintf(`job %d (kind "email", state available, queue "default", priority 1, args {"to":"a"})`, first))

	// With options, only matching jobs count.
	inMail := &millracetest.RequireInsertedOpts{Schema: f.db.Schema, Queue: "mail"}
	mustPass(t, func(tb testing.TB) { millracetest.RequireNotInserted(ctx, tb, f.db.Driver, emailArgs{}, inMail) })
	var mail []int64
	for i := range 7 {
		mail = append(mail, f.insert(t, emailArgs{To: fmt.Sprint(i)}, &client.InsertOpts{Queue: "mail"}))
	}
	msg := mustFail(t, func(tb testing.TB) { millracetest.RequireNotInserted(ctx, tb, f.db.Driver, emailArgs{}, inMail) },
		`found 7 jobs of kind "email" matching the options in schema`, "(and 2 more)",
		fmt.Sprintf("\n  job %d ", mail[6]), fmt.Sprintf("\n  job %d ", mail[2]))
	if strings.Contains(msg, fmt.Sprintf("job %d ", mail[1])) || strings.Contains(msg, fmt.Sprintf("job %d ", first)) {
		t.Errorf("the message shows more than the five newest matching jobs:\n%s", msg)
	}
	if strings.Index(msg, fmt.Sprintf("job %d ", mail[6])) > strings.Index(msg, fmt.Sprintf("job %d ", mail[5])) {
		t.Errorf("the message does not list the newest first:\n%s", msg)
	}
}

// TestRequireManyInserted checks the order, the count, the options of
// each expected job, and that other kinds are ignored.
func TestRequireManyInserted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	manyOpts := &millracetest.RequireManyInsertedOpts{Schema: f.db.Schema}
	e1 := f.insert(t, emailArgs{To: "1"}, nil)
	f.insert(t, namedArgs{kind: "ignored"}, nil)
	s1 := f.insert(t, smsArgs{Number: "1"}, &client.InsertOpts{Queue: "texts"})
	e2 := f.insert(t, emailArgs{To: "2"}, &client.InsertOpts{Priority: 3})

	var rows []*millracetype.JobRow
	mustPass(t, func(tb testing.TB) {
		rows = millracetest.RequireManyInserted(ctx, tb, f.db.Driver, []millracetest.ExpectedJob{
			{Args: emailArgs{}},
			{Args: smsArgs{}, Opts: &millracetest.RequireInsertedOpts{Queue: "texts", Schema: f.db.Schema}},
			{Args: emailArgs{To: "2"}, Opts: &millracetest.RequireInsertedOpts{Priority: 3, MatchArgs: true}},
		}, manyOpts)
	})
	if len(rows) != 3 || rows[0].ID != e1 || rows[1].ID != s1 || rows[2].ID != e2 {
		t.Fatalf("RequireManyInserted returned %v, want jobs %d, %d, %d", rows, e1, s1, e2)
	}

	tests := []struct {
		name     string
		expected []millracetest.ExpectedJob
		wants    []string
	}{
		{"out of order", []millracetest.ExpectedJob{{Args: smsArgs{}}, {Args: emailArgs{}}, {Args: emailArgs{}}}, []string{
			`the jobs of kinds "sms", "email" in schema "` + f.db.Schema + `", in insertion order, are not the 3 expected (found 3):`,
			fmt.Sprintf("\n  [0] job %d (kind \"email\", state available, queue \"default\", priority 1, args {\"to\":\"1\"}):\n      kind: want \"sms\", got \"email\"", e1),
			fmt.Sprintf("\n  [1] job %d (kind \"sms\"", s1),
			"kind: want \"email\", got \"sms\"",
			fmt.Sprintf("\n  [2] job %d (kind \"email\", state available, queue \"default\", priority 3, args {\"to\":\"2\"}): ok", e2),
		}},
		{"wrong option", []millracetest.ExpectedJob{
			{Args: emailArgs{}}, {Args: smsArgs{}, Opts: &millracetest.RequireInsertedOpts{Queue: "default"}}, {Args: emailArgs{}},
		}, []string{
			fmt.Sprintf("\n  [0] job %d", e1), "): ok\n",
			`queue: want "default", got "texts"`,
		}},
		{"missing", []millracetest.ExpectedJob{{Args: emailArgs{}}, {Args: smsArgs{}}, {Args: emailArgs{}}, {Args: emailArgs{}}}, []string{
			"are not the 4 expected (found 3)", "\n  [3] want a job of kind \"email\": missing",
		}},
		{"not expected", []millracetest.ExpectedJob{{Args: emailArgs{}}, {Args: smsArgs{}}}, []string{
			"are not the 2 expected (found 3)",
			fmt.Sprintf("\n  [1] job %d (kind \"sms\"", s1),
			fmt.Sprintf("\n  [2] job %d (kind \"email\", state available, queue \"default\", priority 3, args {\"to\":\"2\"}): not expected", e2),
		}},
		{"kind never inserted", []millracetest.ExpectedJob{{Args: emailArgs{}}, {Args: smsArgs{}}, {Args: emailArgs{}}, {Args: namedArgs{kind: "push"}}}, []string{
			`kinds "email", "sms", "push"`, "\n  [3] want a job of kind \"push\": missing",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustFail(t, func(tb testing.TB) {
				millracetest.RequireManyInserted(ctx, tb, f.db.Driver, tt.expected, manyOpts)
			}, append([]string{"RequireManyInserted: "}, tt.wants...)...)
		})
	}
}

// TestDecodedArgs checks the args RequireInserted returns for an interface
// args type, RawArgs, and args that do not decode.
func TestDecodedArgs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	opts := &millracetest.RequireInsertedOpts{Schema: f.db.Schema}
	f.insert(t, emailArgs{To: "ada"}, nil)
	f.insert(t, client.NewRawArgs("raw_kind", []byte(`{"x": [1, 2]}`)), nil)
	f.insert(t, client.NewRawArgs("bad_named", []byte(`{"n": "not a number"}`)), nil)

	var iface *client.Job[client.JobArgs]
	mustPass(t, func(tb testing.TB) {
		iface = millracetest.RequireInserted[pgx.Tx, client.JobArgs](ctx, tb, f.db.Driver, emailArgs{}, opts)
	})
	if got, ok := iface.Args.(emailArgs); !ok || got.To != "ada" {
		t.Fatalf("args decoded as %#v, want emailArgs{To: ada}", iface.Args)
	}

	var raw *client.Job[client.RawArgs]
	mustPass(t, func(tb testing.TB) {
		raw = millracetest.RequireInserted(ctx, tb, f.db.Driver, client.NewRawArgs("raw_kind", nil), opts)
	})
	if raw.Args.Kind() != "raw_kind" || string(raw.Args.JSON) != `{"x": [1, 2]}` {
		t.Fatalf("raw args are %q of kind %q", raw.Args.JSON, raw.Args.Kind())
	}

	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, namedArgs{kind: "bad_named"}, opts)
	}, "job ", "matches, but its args do not decode into millracetest_test.namedArgs")
}

// TestBadInput checks that every kind of bad input fails the test with a
// message that says what is wrong, without a panic.
func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.insert(t, emailArgs{To: "a"}, nil)
	opts := &millracetest.RequireInsertedOpts{Schema: f.db.Schema}
	var nilDriver *pgxv5.Driver
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only
	bad := func(mut func(o *millracetest.RequireInsertedOpts)) *millracetest.RequireInsertedOpts {
		o := *opts
		mut(&o)
		return &o
	}

	tests := []struct {
		name string
		fn   func(tb testing.TB)
		want string
	}{
		{"nil driver", func(tb testing.TB) { millracetest.RequireInserted[pgx.Tx](ctx, tb, nil, emailArgs{}, opts) },
			"RequireInserted: driver is nil"},
		{"typed nil driver", func(tb testing.TB) { millracetest.RequireNotInserted(ctx, tb, nilDriver, emailArgs{}, opts) },
			"RequireNotInserted: driver is nil"},
		{"nil driver tx", func(tb testing.TB) { millracetest.RequireInsertedTx(ctx, tb, nilDriver, tx, emailArgs{}, opts) },
			"RequireInsertedTx: driver is nil"},
		{"nil tx", func(tb testing.TB) {
			millracetest.RequireInsertedTx[pgx.Tx](ctx, tb, f.db.Driver, nil, emailArgs{}, opts)
		},
			"RequireInsertedTx: transaction is nil"},
		{"no pool", func(tb testing.TB) { millracetest.RequireInserted(ctx, tb, pgxv5.New(nil), emailArgs{}, opts) },
			"has no pool; inside a transaction use the Tx variant"},
		{"nil ctx", func(tb testing.TB) {
			//lint:ignore SA1012 a nil context on purpose
			millracetest.RequireInserted(nil, tb, f.db.Driver, emailArgs{}, opts)
		}, "RequireInserted: ctx is nil"},
		{"nil ctx tx", func(tb testing.TB) {
			//lint:ignore SA1012 a nil context on purpose
			millracetest.RequireManyInsertedTx(nil, tb, f.db.Driver, tx, []millracetest.ExpectedJob{{Args: emailArgs{}}}, nil)
		}, "RequireManyInsertedTx: ctx is nil"},
		{"nil args", func(tb testing.TB) {
			millracetest.RequireInserted[pgx.Tx, client.JobArgs](ctx, tb, f.db.Driver, nil, opts)
		}, "RequireInserted: expected args are nil"},
		{"nil pointer args", func(tb testing.TB) {
			var p *emailArgs
			millracetest.RequireNotInserted(ctx, tb, f.db.Driver, p, opts)
		}, "RequireNotInserted: expected args are nil"},
		{"kind panics", func(tb testing.TB) { millracetest.RequireInserted(ctx, tb, f.db.Driver, panicArgs{}, opts) },
			"Kind() of millracetest_test.panicArgs panicked: no kind today"},
		{"empty kind", func(tb testing.TB) { millracetest.RequireInserted(ctx, tb, f.db.Driver, namedArgs{}, opts) },
			"Kind() of millracetest_test.namedArgs returned an empty string"},
		{"priority", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) { o.Priority = 7 }))
		}, "Priority 7 is out of range 1..4"},
		{"max attempts", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) { o.MaxAttempts = -1 }))
		}, "MaxAttempts -1 is negative"},
		{"state", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) { o.State = "done" }))
		}, `State "done" is not a job state`},
		{"tolerance", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) {
				o.ScheduledAt, o.ScheduledAtWithin = time.Now(), -time.Second
			}))
		}, "ScheduledAtWithin -1s is negative"},
		{"tolerance alone", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) { o.ScheduledAtWithin = time.Second }))
		}, "ScheduledAtWithin is set without ScheduledAt"},
		{"window", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) {
				o.ScheduledFrom, o.ScheduledTo = time.Now(), time.Now().Add(-time.Hour)
			}))
		}, "is before ScheduledFrom"},
		{"metadata json", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) { o.Metadata = []byte(`{"a":`) }))
		}, "Metadata is not valid JSON"},
		{"metadata array", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) { o.Metadata = []byte(`[1]`) }))
		}, "Metadata must be a JSON object, not [1]"},
		{"unique states", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) {
				o.UniqueStates = []millracetype.JobState{"nope"}
			}))
		}, `UniqueStates: "nope" is not a job state`},
		{"empty unique states", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, bad(func(o *millracetest.RequireInsertedOpts) {
				o.UniqueStates = []millracetype.JobState{}
			}))
		}, "UniqueStates is empty but not nil"},
		{"match args unencodable", func(tb testing.TB) {
			millracetest.RequireInserted(ctx, tb, f.db.Driver, chanArgs{C: make(chan int)}, bad(func(o *millracetest.RequireInsertedOpts) { o.MatchArgs = true }))
		}, "MatchArgs: encode the expected args millracetest_test.chanArgs"},
		{"empty list", func(tb testing.TB) { millracetest.RequireManyInserted(ctx, tb, f.db.Driver, nil, nil) },
			"RequireManyInserted: the list of expected jobs is empty (to require that no job of a kind was inserted, use RequireNotInserted)"},
		{"nil args in list", func(tb testing.TB) {
			millracetest.RequireManyInserted(ctx, tb, f.db.Driver, []millracetest.ExpectedJob{{Args: emailArgs{}}, {}}, nil)
		}, "expected job 1: expected args are nil"},
		{"schema mismatch", func(tb testing.TB) {
			millracetest.RequireManyInserted(ctx, tb, f.db.Driver, []millracetest.ExpectedJob{{Args: emailArgs{}, Opts: opts}},
				&millracetest.RequireManyInsertedOpts{Schema: "other"})
		}, `expected job 0: Opts.Schema "` + f.db.Schema + `" differs from RequireManyInsertedOpts.Schema "other"`},
		{"missing schema", func(tb testing.TB) {
			millracetest.RequireNotInserted(ctx, tb, f.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{Schema: "no_such_schema"})
		}, `RequireNotInserted: list jobs of kinds ["email"] in schema "no_such_schema": `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustFail(t, tt.fn, tt.want)
		})
	}
}

// chanArgs cannot be encoded as JSON.
type chanArgs struct {
	C chan int `json:"c"`
}

func (chanArgs) Kind() string { return "email" }

// TestRequireInsertedSeesWorkedJobs checks that a job counts as inserted
// whatever its state, unless State asks for one.
func TestRequireInsertedSeesWorkedJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	now := time.Now()
	f.db.InsertJob(t, &driver.JobInsertFullParams{
		Args: []byte(`{"to":"done"}`), Kind: "email", Queue: "default", Priority: 1, MaxAttempts: 25,
		State: millracetype.JobStateCompleted, Attempt: 1, AttemptedAt: &now, FinalizedAt: &now,
	})
	mustPass(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{Schema: f.db.Schema})
	})
	mustFail(t, func(tb testing.TB) {
		millracetest.RequireInserted(ctx, tb, f.db.Driver, emailArgs{}, &millracetest.RequireInsertedOpts{
			Schema: f.db.Schema, State: millracetype.JobStateAvailable,
		})
	}, "state: want available, got completed")
}
