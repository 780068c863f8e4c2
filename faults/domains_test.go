package faults

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/migrate"
)

// Two services on one database (TestDomains): service a and service b
// share the schema and the default queue but not their code. Each has its
// own kinds (a job that sleeps, a periodic tick every second) and its own
// Config.Domain. Their jobs have MaxAttempts 1, so a stuck job rescued by a
// leader that does not know its kind would be discarded unless the rescuer
// leaves the decision to the service that works it.

// envDomains sets TestDomains's duration (default: 40 s reduced, 2 min
// full).
const envDomains = "MILLRACE_FAULTS_DOMAINS"

// The services' kinds.
type domJobA struct {
	MS int `json:"ms"`
}

func (domJobA) Kind() string { return "dom_a_job" }

type domJobB struct {
	MS int `json:"ms"`
}

func (domJobB) Kind() string { return "dom_b_job" }

type domTickA struct{}

func (domTickA) Kind() string { return "dom_a_tick" }

type domTickB struct{}

func (domTickB) Kind() string { return "dom_b_tick" }

// domSleeper is a job that sleeps MS milliseconds, honouring its context.
type domSleeper interface {
	client.JobArgs
	sleep() time.Duration
}

func (a domJobA) sleep() time.Duration { return time.Duration(a.MS) * time.Millisecond }
func (a domJobB) sleep() time.Duration { return time.Duration(a.MS) * time.Millisecond }

func sleepWorker[T domSleeper]() client.Worker[T] {
	return client.WorkFunc(func(ctx context.Context, job *client.Job[T]) error {
		select {
		case <-time.After(job.Args.sleep()):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

func tickWorker[T client.JobArgs]() client.Worker[T] {
	return client.WorkFunc(func(context.Context, *client.Job[T]) error { return nil })
}

// domainHelperMain runs a helper process as a client of service a or b, on
// the default queue, with that service's workers and periodic tick. It
// stops as helperMain does.
func domainHelperMain(domain string) int {
	id := os.Getenv(helperID)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("client", id)
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", id, err)
		return 2
	}
	workers, err := strconv.Atoi(os.Getenv(helperWorkers))
	if err != nil {
		return fail(fmt.Errorf("%s: %w", helperWorkers, err))
	}
	var jobTimeout, rescueAfter time.Duration
	for name, d := range map[string]*time.Duration{helperJobTimeout: &jobTimeout, helperRescueAfter: &rescueAfter} {
		if v := os.Getenv(name); v != "" {
			if *d, err = time.ParseDuration(v); err != nil {
				return fail(fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	schema := os.Getenv(helperSchema)
	cfg, err := clientPoolConfig(os.Getenv(helperURL), schema, os.Getenv(helperApp), 6)
	if err != nil {
		return fail(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return fail(err)
	}
	defer pool.Close()

	ws := client.NewWorkers()
	var tick client.PeriodicJobConstructor
	switch domain {
	case "a":
		client.AddWorker(ws, sleepWorker[domJobA]())
		client.AddWorker(ws, tickWorker[domTickA]())
		tick = func() (client.JobArgs, *client.InsertOpts) { return domTickA{}, nil }
	case "b":
		client.AddWorker(ws, sleepWorker[domJobB]())
		client.AddWorker(ws, tickWorker[domTickB]())
		tick = func() (client.JobArgs, *client.InsertOpts) { return domTickB{}, nil }
	default:
		return fail(fmt.Errorf("unknown service %q", domain))
	}
	c, err := client.New(pgxv5.New(pool), &client.Config{
		ID: id, Schema: schema, Logger: logger, Domain: domain,
		Queues:               map[string]client.QueueConfig{client.QueueDefault: {MaxWorkers: workers}},
		Workers:              ws,
		JobTimeout:           jobTimeout,
		RescueStuckJobsAfter: rescueAfter,
		PeriodicJobs: []*client.PeriodicJob{client.NewPeriodicJob(client.PeriodicInterval(time.Second), tick,
			&client.PeriodicJobOpts{ID: "tick-" + domain})},
	})
	if err != nil {
		return fail(err)
	}
	return serveHelper(id, c, fail)
}

// term is a leadership term seen by the test: from when it was first seen
// to when it was first seen gone.
type term struct {
	leaderID   string
	electedAt  time.Time
	seen, gone time.Time // gone is zero while it lasts
}

// leaderWatch polls river_leader and millrace_leader every 50 ms and keeps
// the history of terms, per domain ("" for the database).
type leaderWatch struct {
	mu    sync.Mutex
	terms map[string][]*term
}

func (w *leaderWatch) run(ctx context.Context, e *env) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	q := `SELECT '' AS domain, leader_id, elected_at FROM ` + pgx.Identifier{e.schema, "river_leader"}.Sanitize() + ` WHERE expires_at > now()
UNION ALL SELECT domain, leader_id, elected_at FROM ` + pgx.Identifier{e.schema, "millrace_leader"}.Sanitize() + ` WHERE expires_at > now()`
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rows, err := e.db.Pool.Query(qctx, q)
		now := time.Now()
		live := map[string]term{}
		if err == nil {
			for rows.Next() {
				var d string
				var t term
				if err = rows.Scan(&d, &t.leaderID, &t.electedAt); err != nil {
					break
				}
				live[d] = t
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		cancel()
		if err == nil {
			w.update(now, live)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *leaderWatch) update(now time.Time, live map[string]term) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range []string{"", "a", "b"} {
		hist := w.terms[d]
		var last *term
		if len(hist) > 0 && hist[len(hist)-1].gone.IsZero() {
			last = hist[len(hist)-1]
		}
		cur, ok := live[d]
		if last != nil && (!ok || cur.leaderID != last.leaderID || !cur.electedAt.Equal(last.electedAt)) {
			last.gone = now
			last = nil
		}
		if ok && last == nil {
			w.terms[d] = append(w.terms[d], &term{leaderID: cur.leaderID, electedAt: cur.electedAt, seen: now})
		}
	}
}

// current returns the live term of a domain ("" for the database), or nil.
func (w *leaderWatch) current(domain string) *term {
	w.mu.Lock()
	defer w.mu.Unlock()
	hist := w.terms[domain]
	if len(hist) > 0 && hist[len(hist)-1].gone.IsZero() {
		t := *hist[len(hist)-1]
		return &t
	}
	return nil
}

// leadersAround returns the leaders of a domain ("" for the database) whose
// terms overlap [at-slack, at+slack]: the candidates for an action at at.
func (w *leaderWatch) leadersAround(domain string, at time.Time, slack time.Duration) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for _, t := range w.terms[domain] {
		if t.seen.After(at.Add(slack)) || (!t.gone.IsZero() && t.gone.Before(at.Add(-slack))) {
			continue
		}
		ids = append(ids, t.leaderID)
	}
	return ids
}

// heartbeatRescuer returns the client named as the rescuer in a heartbeat
// rescue's error ("... (client a-1, rescued by b-2)"), and whether msg is
// one.
func heartbeatRescuer(msg string) (string, bool) {
	if !strings.HasPrefix(msg, client.HeartbeatRescueMessage) {
		return "", false
	}
	_, rest, ok := strings.Cut(msg, "rescued by ")
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(rest, ")"), true
}

// serviceOf returns the service ("a" or "b") of a helper ID ("a-3").
func serviceOf(id string) string {
	s, _, _ := strings.Cut(id, "-")
	return s
}

// kill is one SIGKILL of the test.
type domKill struct {
	at       time.Time
	victim   string
	cross    bool    // the victim's service did not hold the database leadership
	stranded []int64 // jobs it left running
	// attributed: cross, and every stranded job was rescued while the
	// database leader of the kill (of the other service) still led.
	attributed bool
}

func domainsDuration(t *testing.T, sz sizes) time.Duration {
	if v := os.Getenv(envDomains); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 20*time.Second {
			t.Fatalf("%s=%q: want a duration of at least 20s", envDomains, v)
		}
		return d
	}
	if sz.name == "full" {
		return 2 * time.Minute
	}
	return 40 * time.Second
}

// TestDomains runs services a and b, two processes each, on one database
// while processes of both are SIGKILLed and replaced, and checks:
//
//   - no job is cancelled, and every discarded job was discarded by a
//     rescue while the database leader was a client of the job's own
//     service (a client never discards a kind it has no worker for);
//   - jobs stranded by a killed process while the other service led the
//     database were rescued by it and then completed by their own service;
//   - no client ever fetched the other service's jobs;
//   - each service's periodic tick ran every second, never twice, with
//     gaps only after its own domain leader was killed (the time a dead
//     leader's term takes to expire), and service a's ticks went on while
//     service b held the database leadership.
func TestDomains(t *testing.T) {
	sz := loadSizes(t)
	duration := domainsDuration(t, sz)
	e := newEnv(t, sz)
	m, err := migrate.New[pgx.Tx](e.db.Driver, &migrate.Config{Schema: e.schema, Line: migrate.LineMillrace})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Migrate(context.Background(), migrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}

	watch := &leaderWatch{terms: map[string][]*term{}}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); watch.run(watchCtx, e) }()
	defer func() { stopWatch(); <-watchDone }()

	// Short rescue times, as in the crash scenarios: a leader rescues what
	// a killed process left running at its next pass (every 30 s, and on
	// becoming leader).
	const jobTimeout, rescueAfter = 5 * time.Second, 5 * time.Second
	live := map[string]*helper{}
	serial := map[string]int{}
	startService := func(service string) *helper {
		serial[service]++
		id := fmt.Sprintf("%s-%d", service, serial[service])
		h := e.startHelper(helperOpts{id: id, domain: service, jobTimeout: jobTimeout, rescueAfter: rescueAfter})
		live[id] = h
		return h
	}
	// b-1 first, so that service b leads the database from the start.
	startService("b")
	if !testwait.Poll(30*time.Second, func() bool { return e.leader() == "b-1" }) {
		t.Fatalf("b-1 never became the database leader (leader %q)", e.leader())
	}
	startService("a")
	startService("a")
	startService("b")
	if !testwait.Poll(30*time.Second, func() bool { return watch.current("a") != nil && watch.current("b") != nil }) {
		t.Fatal("the domains have no leaders 30 s after their clients started")
	}
	begin := time.Now()

	// The load: every 250 ms three jobs of each service, 200 ms to 2 s
	// long, MaxAttempts 1.
	var inserted [2]int
	loadCtx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			var params []client.InsertManyParams
			for range 3 {
				opts := &client.InsertOpts{MaxAttempts: 1}
				params = append(params, client.InsertManyParams{Args: domJobA{MS: 200 + rand.IntN(1800)}, InsertOpts: opts},
					client.InsertManyParams{Args: domJobB{MS: 200 + rand.IntN(1800)}, InsertOpts: opts})
			}
			if _, err := e.admin.InsertMany(context.Background(), params); err != nil {
				loadDone <- err
				return
			}
			inserted[0] += 3
			inserted[1] += 3
			select {
			case <-loadCtx.Done():
				loadDone <- nil
				return
			case <-tick.C:
			}
		}
	}()

	// The kills, in turns until the duration is up, each victim replaced
	// at once: a process of the service that does not lead the database
	// (its domain leader when it has one), and then the database leader.
	// After a cross kill the test waits (up to 45 s: the rescuer's 30 s
	// interval) until the database leader, of the other service, has
	// rescued what the victim left running.
	var kills []domKill
	for round := 0; time.Since(begin) < duration; round++ {
		time.Sleep(5 * time.Second) // let the replacement take its share of the load
		// The database leader, once it is a live process (a killed
		// leader's term lasts until it expires).
		var dbTerm *term
		if !testwait.Poll(30*time.Second, func() bool {
			dbTerm = watch.current("")
			return dbTerm != nil && live[dbTerm.leaderID] != nil
		}) {
			t.Errorf("round %d: no live database leader within 30 s (term %+v)", round, dbTerm)
			continue
		}
		var victim string
		cross := round%2 == 0
		if cross {
			other := "a"
			if serviceOf(dbTerm.leaderID) == "a" {
				other = "b"
			}
			if dt := watch.current(other); dt != nil && live[dt.leaderID] != nil {
				victim = dt.leaderID
			} else {
				for id := range live {
					if serviceOf(id) == other {
						victim = id
						break
					}
				}
			}
		} else {
			victim = dbTerm.leaderID
		}
		h := live[victim]
		if h == nil {
			t.Fatalf("round %d: victim %q is not a live helper (live: %v)", round, victim, slices.Sorted(maps.Keys(live)))
		}
		// A victim that runs nothing tests nothing.
		testwait.Poll(10*time.Second, func() bool { return len(e.strandedBy(victim)) > 0 })
		k := domKill{at: time.Now(), victim: victim, cross: cross}
		h.kill()
		k.stranded = e.strandedBy(victim)
		delete(live, victim)
		startService(serviceOf(victim))
		if cross {
			var running int
			rescued := testwait.Poll(45*time.Second, func() bool {
				e.scan(`SELECT count(*) FROM `+e.job()+` WHERE id = ANY($1) AND state = 'running'`, []any{k.stranded}, &running)
				return running == 0
			})
			now := watch.current("")
			k.attributed = rescued && now != nil && now.leaderID == dbTerm.leaderID && now.electedAt.Equal(dbTerm.electedAt)
		} else if !testwait.Poll(30*time.Second, func() bool { cur := watch.current(""); return cur != nil && cur.leaderID != victim }) {
			t.Errorf("round %d: no new database leader 30 s after %s was killed", round, victim)
		}
		kills = append(kills, k)
		t.Logf("round %d at %v: killed %s (database leader %s; cross %v), %d jobs left running; rescued by that leader: %v",
			round, k.at.Sub(begin).Round(100*time.Millisecond), victim, dbTerm.leaderID, cross, len(k.stranded), k.attributed)
	}
	stopLoad()
	if err := <-loadDone; err != nil {
		t.Fatalf("insert: %v", err)
	}
	loadEnd := time.Now()
	if !e.waitFinished(3 * time.Minute) {
		t.Errorf("jobs unfinished 3 min after the load ended: %v", e.states())
	}
	for _, h := range live {
		h.stop()
	}

	// No job cancelled; no client fetched the other service's jobs.
	states := e.states()
	if states["cancelled"] != 0 {
		t.Errorf("%d jobs cancelled; nobody asked for a cancel", states["cancelled"])
	}
	var unknown int
	e.scan(`SELECT count(*) FROM `+e.job()+` j, unnest(j.errors) x WHERE x->>'error' LIKE '%is not registered%'`, nil, &unknown)
	if unknown != 0 {
		t.Errorf("%d attempts by a client without the job's worker", unknown)
	}

	// Every discard is a rescue by a database leader of the job's own
	// service. finalized_at is the rescuer's clock (this machine's), and
	// the watch sees a term change within 50 ms: 500 ms of slack.
	type discardRow struct {
		id          int64
		kind        string
		finalizedAt time.Time
		lastError   string
	}
	rows, err := e.db.Pool.Query(context.Background(), `SELECT id, kind, finalized_at, coalesce(errors[cardinality(errors)]->>'error', '') FROM `+e.job()+
		` WHERE state = 'discarded' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	discards, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (d discardRow, err error) {
		return d, r.Scan(&d.id, &d.kind, &d.finalizedAt, &d.lastError)
	})
	if err != nil {
		t.Fatal(err)
	}
	var badDiscards []string
	for _, d := range discards {
		service := strings.TrimSuffix(strings.TrimPrefix(d.kind, "dom_"), "_job")
		ok := false
		switch rescuer, heartbeat := heartbeatRescuer(d.lastError); {
		case heartbeat:
			// Rescued by a live client because its own stopped
			// heartbeating: the rescuer is named in the error.
			ok = serviceOf(rescuer) == service
		case d.lastError == "Stuck job rescued by JobRescuer":
			// River's rule, by the database leader.
			leaders := watch.leadersAround("", d.finalizedAt, 500*time.Millisecond)
			ok = len(leaders) > 0
			for _, id := range leaders {
				ok = ok && serviceOf(id) == service
			}
		}
		if !ok {
			badDiscards = append(badDiscards, fmt.Sprintf("job %d (%s) discarded at %v (%q)",
				d.id, d.kind, d.finalizedAt.Sub(begin).Round(time.Millisecond), d.lastError))
		}
	}
	if len(badDiscards) > 0 {
		t.Errorf("%d jobs discarded by a client of the other service (or not by a rescue); first: %v", len(badDiscards), badDiscards[:min(5, len(badDiscards))])
	}

	// Jobs stranded by a kill and rescued by a client of the other service
	// (named in the heartbeat rescue's error) or by the database leader of
	// the other service (River's rule, attributed above): none discarded,
	// all completed by their own service in the end. Which live client
	// rescues a dead one's jobs is a race; client/liveness_test.go covers
	// the cross-service case deterministically.
	var crossStranded, crossCompleted int
	for _, k := range kills {
		var ids []int64
		var rescueErrors []string
		e.scan(`SELECT coalesce(array_agg(id ORDER BY id), '{}'), coalesce(array_agg(coalesce((SELECT e->>'error' FROM unnest(errors) e
				WHERE starts_with(e->>'error', 'Job rescued') OR e->>'error' = 'Stuck job rescued by JobRescuer' LIMIT 1), '') ORDER BY id), '{}')
			FROM `+e.job()+` WHERE id = ANY($1)`, []any{k.stranded}, &ids, &rescueErrors)
		var cross []int64
		for i, id := range ids {
			rescuer, heartbeat := heartbeatRescuer(rescueErrors[i])
			if heartbeat && serviceOf(rescuer) != serviceOf(k.victim) || !heartbeat && rescueErrors[i] != "" && k.attributed {
				cross = append(cross, id)
			}
		}
		var discarded, completed int
		e.scan(`SELECT count(*) FILTER (WHERE state = 'discarded'), count(*) FILTER (WHERE state = 'completed') FROM `+e.job()+` WHERE id = ANY($1)`,
			[]any{cross}, &discarded, &completed)
		crossCompleted += completed
		if discarded != 0 {
			t.Errorf("%d of the %d jobs %s left running that the other service rescued were discarded", discarded, len(cross), k.victim)
		}
		if completed != len(cross) {
			t.Errorf("%d of the %d jobs %s left running that the other service rescued ended completed", completed, len(cross), k.victim)
		}
		crossStranded += len(cross)
	}

	// The periodic ticks.
	var notes []string
	for _, service := range []string{"a", "b"} {
		var runs []time.Time
		var total int
		e.scan(`SELECT coalesce(array_agg(run_at ORDER BY run_at), '{}'), count(*) FROM (SELECT `+runAtSQL+` AS run_at FROM `+e.job()+
			` WHERE kind = $1) r WHERE run_at >= $2 AND run_at < $3`,
			[]any{"dom_" + service + "_tick", begin, loadEnd}, &runs, &total)
		if total != len(slices.CompactFunc(slices.Clone(runs), time.Time.Equal)) {
			t.Errorf("service %s: %d ticks for fewer run times: a run enqueued twice", service, total)
		}
		if len(runs) == 0 {
			t.Errorf("service %s: no tick", service)
			continue
		}
		// A gap longer than 2 s needs its domain leader killed between
		// the tick before it and the tick after it; none may exceed the
		// 15 s term of a dead leader plus a 6 s election wait and slack.
		var maxGap time.Duration
		gaps := 0
		edges := append(append([]time.Time{begin}, runs...), loadEnd)
		for i := 1; i < len(edges); i++ {
			gap := edges[i].Sub(edges[i-1])
			maxGap = max(maxGap, gap)
			if gap <= 2*time.Second {
				continue
			}
			gaps++
			explained := false
			for _, k := range kills {
				if serviceOf(k.victim) != service || k.at.Before(edges[i-1].Add(-time.Second)) || k.at.After(edges[i]) {
					continue
				}
				for _, id := range watch.leadersAround(service, k.at, 500*time.Millisecond) {
					explained = explained || id == k.victim
				}
			}
			if !explained || gap > 25*time.Second {
				t.Errorf("service %s: no tick from %v to %v (%v) without its domain leader killed just before (or too long)",
					service, edges[i-1].Sub(begin).Round(time.Millisecond), edges[i].Sub(begin).Round(time.Millisecond), gap)
			}
		}
		// Ticks while the other service held the database leadership.
		underOther := 0
		for _, r := range runs {
			for _, id := range watch.leadersAround("", r, 0) {
				if serviceOf(id) != service {
					underOther++
					break
				}
			}
		}
		if service == "a" && underOther == 0 {
			t.Error("service a enqueued no tick while service b led the database")
		}
		notes = append(notes, fmt.Sprintf("service %s: %d ticks in %v, %d while the other service led the database, %d gaps over 2 s (longest %v)",
			service, len(runs), loadEnd.Sub(begin).Round(time.Second), underOther, gaps, maxGap.Round(100*time.Millisecond)))
	}
	watch.mu.Lock()
	dbTerms := len(watch.terms[""])
	watch.mu.Unlock()
	t.Logf("TestDomains: %v of load, %d kills, %d database leadership terms; inserted a %d, b %d; states %v; "+
		"%d discards, %d of them not by a rescue of the job's own service; %d stranded jobs rescued by the other service, %d of them completed by their own service\n%s",
		loadEnd.Sub(begin).Round(time.Second), len(kills), dbTerms, inserted[0], inserted[1], states, len(discards), len(badDiscards), crossStranded, crossCompleted,
		strings.Join(notes, "\n"))
}
