package notifier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/driver"
	"github.com/millrace/millrace/internal/testdb"
	"github.com/millrace/millrace/internal/testwait"
)

func TestDeliversToTheTopicsSubscribersInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()

	var mu sync.Mutex
	var calls []string
	record := func(name string) func(topic, payload string) {
		return func(topic, payload string) {
			mu.Lock()
			calls = append(calls, name+":"+topic+":"+payload)
			mu.Unlock()
		}
	}
	for _, s := range []struct{ name, topic string }{{"a1", "a"}, {"b1", "b"}, {"a2", "a"}} {
		if _, err := e.n.Listen(ctxFor(t), s.topic, record(s.name)); err != nil {
			t.Fatal(err)
		}
	}
	_, last := e.listen("last")

	e.notify("b", "1")
	e.notify("a", "2")
	e.notify("nobody", "3")
	e.notify("a", "4")
	e.notify("last", "end")
	last.expect(t, "end")

	mu.Lock()
	defer mu.Unlock()
	want := []string{"b1:b:1", "a1:a:2", "a2:a:2", "a1:a:4", "a2:a:4"}
	if !slices.Equal(calls, want) {
		t.Fatalf("calls %q, want %q", calls, want)
	}
}

func TestSchemaIsolation(t *testing.T) {
	t.Parallel()
	schemaA, poolA := testdb.NewSchema(t)
	schemaB, poolB := testdb.NewSchema(t)
	a := newEnvOn(t, schemaA, poolA, nil)
	b := newEnvOn(t, schemaB, poolB, nil)
	a.start()
	b.start()
	_, gotA := a.listen("t")
	_, gotB := b.listen("t")

	// Both sent from one session: each listener receives its own in commit
	// order, so once it has its own, the other's would have arrived first.
	notifyOn(t, poolA, schemaB, "t", "for b")
	notifyOn(t, poolA, schemaA, "t", "for a")
	gotA.expect(t, "for a")
	gotB.expect(t, "for b")
	gotA.expectNone(t)
	gotB.expectNone(t)

	// A notification on the bare topic (no schema) reaches neither.
	if _, err := poolA.Exec(ctxFor(t), "SELECT pg_notify('t', 'bare')"); err != nil {
		t.Fatal(err)
	}
	notifyOn(t, poolA, schemaA, "t", "after bare")
	gotA.expect(t, "after bare")
}

func TestListenBeforeStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)

	// Before Start, Listen returns at once even with a context that has
	// already ended: there is no connection to wait for.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	col := newCollector()
	if _, err := e.n.Listen(ctx, "early", col.fn); err != nil {
		t.Fatalf("Listen before Start: %v", err)
	}
	if e.n.Connected() {
		t.Fatal("Connected before Start")
	}

	e.start()
	if !e.n.Connected() {
		t.Fatal("not Connected after Start")
	}
	if got := e.c.recorded(); !slices.Equal(got, []string{"listen early"}) {
		t.Fatalf("statements %q, want the LISTEN run by Start", got)
	}
	e.notify("early", "hello")
	col.expect(t, "hello")
}

func TestUnlisten(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()

	sub1, col1 := e.listen("t")
	sub2, col2 := e.listen("t")
	_, sentinel := e.listen("sentinel")

	sub1.Unlisten(ctxFor(t))
	sub1.Unlisten(ctxFor(t)) // a second Unlisten does nothing
	if slices.Contains(e.c.recorded(), "unlisten t") {
		t.Fatal("UNLISTEN run while the topic still has a subscriber")
	}
	e.notify("t", "x")
	col2.expect(t, "x") // sub1 came first, so it would have been called by now
	col1.expectNone(t)

	// The last Unlisten runs UNLISTEN before it returns.
	sub2.Unlisten(ctxFor(t))
	if got := e.c.recorded(); !slices.Contains(got, "unlisten t") {
		t.Fatalf("statements %q: no UNLISTEN after the last Unlisten", got)
	}
	e.notify("t", "y")
	e.notify("sentinel", "s")
	sentinel.expect(t, "s")
	col1.expectNone(t)
	col2.expectNone(t)

	// Subscribing again LISTENs again.
	_, col3 := e.listen("t")
	e.notify("t", "z")
	col3.expect(t, "z")
	want := []string{"listen t", "listen sentinel", "unlisten t", "listen t"}
	if got := e.c.recorded(); !slices.Equal(got, want) {
		t.Fatalf("statements %q, want %q", got, want)
	}
}

func TestUnlistenWhileStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	sub, _ := e.listen("gone")
	_, kept := e.listen("kept")
	sub.Unlisten(ctxFor(t))
	e.start()
	if got := e.c.recorded(); !slices.Equal(got, []string{"listen kept"}) {
		t.Fatalf("statements %q, want only the remaining topic", got)
	}
	e.notify("kept", "k")
	kept.expect(t, "k")
}

func TestListenAndUnlistenFromSubscriber(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()

	inner := newCollector()
	subs := make(chan *Subscription, 1)
	errs := make(chan error, 1)
	var outer *Subscription
	outer, err := e.n.Listen(ctxFor(t), "outer", func(_, _ string) {
		// Runs on the dispatch goroutine: Listen waits for the run
		// goroutine to LISTEN, which must not deadlock.
		sub, err := e.n.Listen(context.Background(), "inner", inner.fn)
		subs <- sub
		errs <- err
		outer.Unlisten(context.Background())
	})
	if err != nil {
		t.Fatal(err)
	}
	e.notify("outer", "go")
	if err := <-errs; err != nil {
		t.Fatalf("Listen from a subscriber: %v", err)
	}
	sub := <-subs
	e.notify("inner", "in")
	inner.expect(t, "in")
	sub.Unlisten(ctxFor(t))
}

func TestPanickingSubscriber(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()

	if _, err := e.n.Listen(ctxFor(t), "t", func(_, payload string) { panic("boom " + payload) }); err != nil {
		t.Fatal(err)
	}
	unsubscribe := e.n.OnStatus(func(bool) { panic("status boom") })
	defer unsubscribe()
	_, col := e.listen("t")

	e.notify("t", "1")
	e.notify("t", "2")
	col.expect(t, "1", "2")
	if logs := e.logs.String(); !strings.Contains(logs, "boom 1") || !strings.Contains(logs, "boom 2") {
		t.Fatalf("panics not logged:\n%s", logs)
	}
}

func TestListenValidation(t *testing.T) {
	t.Parallel()
	n := New(func() (driver.Listener, error) { return nil, errFactory }, nil)
	if _, err := n.Listen(context.Background(), "", func(string, string) {}); err == nil {
		t.Error("Listen with an empty topic: no error")
	}
	if _, err := n.Listen(context.Background(), "t", nil); err == nil {
		t.Error("Listen with a nil function: no error")
	}
}

func TestListenContextEndsBeforeListen(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()

	gate := make(chan struct{})
	e.c.listenGate.Store(&gate)
	ctx, cancel := context.WithCancel(ctxFor(t))
	type result struct {
		sub *Subscription
		err error
	}
	done := make(chan result, 1)
	col := newCollector()
	go func() {
		sub, err := e.n.Listen(ctx, "slow", col.fn)
		done <- result{sub, err}
	}()
	// Wait until the run goroutine is stuck in the LISTEN, then cancel:
	// Listen gives up with an error and removes its subscription.
	select {
	case <-e.c.gateReached:
	case <-time.After(waitTimeout):
		t.Fatal("the LISTEN never started")
	}
	cancel()
	var res result
	select {
	case res = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Listen did not return after its context was cancelled")
	}
	if !errors.Is(res.err, context.Canceled) || res.sub != nil {
		t.Fatalf("Listen: sub=%v err=%v, want context.Canceled", res.sub, res.err)
	}
	// Once the LISTEN goes through, the notifier UNLISTENs again.
	e.c.listenGate.Store(nil)
	close(gate)
	testwait.Until(t, waitTimeout, func() bool {
		return slices.Contains(e.c.recorded(), "unlisten slow")
	}, "the abandoned topic is unlistened")
	_, check := e.listen("check")
	e.notify("slow", "lost")
	e.notify("check", "ok")
	check.expect(t, "ok")
	col.expectNone(t)
}

func TestConcurrentListenUnlistenWhileNotificationsFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.start()

	_, flow := e.listen("flow")

	const flowCount = 300
	const workers = 8
	const rounds = 15

	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	wg.Go(func() {
		for i := range flowCount {
			if _, err := e.pool.Exec(context.Background(), "SELECT pg_notify($1, $2)", e.schema+".flow", payload(i)); err != nil {
				errs <- fmt.Errorf("notify flow: %w", err)
				return
			}
		}
	})
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				col := newCollector()
				// Every other round shares a topic with other workers, so
				// Listen sometimes finds its topic already listened to.
				topic := fmt.Sprintf("w%d", w)
				if r%2 == 1 {
					topic = "shared"
				}
				sub, err := e.n.Listen(context.Background(), topic, col.fn)
				if err != nil {
					errs <- err
					return
				}
				// Listen has returned, so the topic is listened to and the
				// notification must arrive.
				want := fmt.Sprintf("%d-%d", w, r)
				if _, err := e.pool.Exec(context.Background(), "SELECT pg_notify($1, $2)", e.schema+"."+topic, want); err != nil {
					errs <- err
					return
				}
				got := false
				for !got {
					select {
					case p := <-col.ch:
						got = p == want // on "shared" others' payloads arrive too
					case <-time.After(waitTimeout):
						errs <- fmt.Errorf("worker %d round %d: no notification on %s", w, r, topic)
						return
					}
				}
				sub.Unlisten(context.Background())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	// No flow notification was lost or reordered by all the interrupting.
	for i := range flowCount {
		if got := flow.next(t); got != payload(i) {
			t.Fatalf("flow notification %d: got %q", i, got)
		}
	}
	// Every topic but flow was finally unlistened.
	e.notify("flow", "end")
	flow.expect(t, "end")
	e.n.mu.Lock()
	topics := len(e.n.topics)
	e.n.mu.Unlock()
	if topics != 1 {
		t.Fatalf("%d topics still subscribed, want 1", topics)
	}
}

func TestReconnectsAfterConnectionLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	status := e.onStatus()
	_, col := e.listen("t")
	e.start()
	status.expect(t, true)

	e.notify("t", "before")
	col.expect(t, "before")

	pid := e.listenerPID()
	e.terminate(pid)
	status.expect(t, false, true)
	if !e.n.Connected() {
		t.Fatal("not Connected after the status went back to true")
	}
	if newPID := e.listenerPID(); newPID == pid {
		t.Fatalf("listener backend pid still %d after reconnecting", pid)
	}
	if got := e.c.connects.Load(); got != 2 {
		t.Fatalf("%d connections made, want 2", got)
	}

	// Re-listened: notifications sent after the reconnect arrive, on the
	// old topic and on a new one.
	_, col2 := e.listen("t2")
	e.notify("t", "after")
	e.notify("t2", "new")
	col.expect(t, "after")
	col2.expect(t, "new")
	if logs := e.logs.String(); !strings.Contains(logs, "connection lost") || !strings.Contains(logs, "reconnected") {
		t.Fatalf("connection loss and reconnection not logged:\n%s", logs)
	}

	e.n.Stop()
	status.expect(t, false)
	status.expectNone(t)
}

func TestReconnectRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	attempts := make(chan int, 100)
	e := newEnv(t, &Config{ReconnectBackoff: func(attempt int) time.Duration {
		attempts <- attempt
		return time.Millisecond // raised to the 10 ms minimum
	}})
	status := e.onStatus()
	_, col := e.listen("t")
	e.start()
	status.expect(t, true)

	e.c.failConnect.Store(true)
	e.terminate(e.listenerPID())
	status.expect(t, false)
	// Attempts are counted up while connecting fails.
	for want := 1; want <= 3; want++ {
		select {
		case got := <-attempts:
			if got != want {
				t.Fatalf("backoff attempt %d, want %d", got, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no reconnection attempt %d", want)
		}
	}
	e.c.failConnect.Store(false)
	status.expect(t, true)
	e.notify("t", "back")
	col.expect(t, "back")
	if !strings.Contains(e.logs.String(), "reconnection failed") {
		t.Fatalf("failed reconnections not logged:\n%s", e.logs.String())
	}
}

// TestFlappingConnectionBacksOff: a connection lost again soon after a
// reconnection continues the backoff count where that reconnection left it,
// instead of retrying at the first attempt's delay each time.
func TestFlappingConnectionBacksOff(t *testing.T) {
	t.Parallel()
	attempts := make(chan int, 100)
	e := newEnv(t, &Config{ReconnectBackoff: func(attempt int) time.Duration {
		attempts <- attempt
		return time.Millisecond // raised to the 10 ms minimum
	}})
	status := e.onStatus()
	e.listen("t")
	e.start()
	status.expect(t, true)
	for want := 1; want <= 3; want++ {
		e.terminate(e.listenerPID())
		status.expect(t, false, true)
		select {
		case got := <-attempts:
			if got != want {
				t.Fatalf("reconnection after loss %d used backoff attempt %d, want %d", want, got, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no reconnection after loss %d", want)
		}
	}
}

// TestStableConnectionStartsBackoffOver: a connection that served for
// stableConnection before it was lost is reconnected at the first attempt's
// delay again, while one lost as soon as it was up still continues the
// count. (With the count continued for every loss sooner than 10 s, losses
// a few seconds apart made each reconnection, and so the fetch that
// catches up on the notifications missed meanwhile, wait longer: 1.6 s by
// the fifth loss, 10 s by the eighth.)
func TestStableConnectionStartsBackoffOver(t *testing.T) {
	t.Parallel()
	attempts := make(chan int, 100)
	e := newEnv(t, &Config{ReconnectBackoff: func(attempt int) time.Duration {
		attempts <- attempt
		return time.Millisecond // raised to the 10 ms minimum
	}})
	status := e.onStatus()
	e.listen("t")
	e.start()
	status.expect(t, true)
	expectAttempt := func(loss, want int) {
		t.Helper()
		select {
		case got := <-attempts:
			if got != want {
				t.Fatalf("reconnection after loss %d used backoff attempt %d, want %d", loss, got, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no reconnection after loss %d", loss)
		}
	}

	// Two losses right after (re)connecting: the count continues.
	e.terminate(e.listenerPID())
	status.expect(t, false, true)
	expectAttempt(1, 1)
	e.terminate(e.listenerPID())
	status.expect(t, false, true)
	expectAttempt(2, 2)

	// The connection serves for over a second (the scenario, not a wait
	// for a result): its loss starts the count over.
	time.Sleep(1100 * time.Millisecond)
	e.terminate(e.listenerPID())
	status.expect(t, false, true)
	expectAttempt(3, 1)

	// And a loss right after that reconnection continues from there.
	e.terminate(e.listenerPID())
	status.expect(t, false, true)
	expectAttempt(4, 2)
}

func TestFailedPingCountsAsConnectionLoss(t *testing.T) {
	t.Parallel()
	e := newEnv(t, &Config{PingInterval: 20 * time.Millisecond})
	status := e.onStatus()
	_, col := e.listen("t")
	e.start()
	status.expect(t, true)

	e.c.pingFailures.Store(1)
	status.expect(t, false, true)
	if got := e.c.connects.Load(); got != 2 {
		t.Fatalf("%d connections made, want 2", got)
	}
	e.notify("t", "after ping")
	col.expect(t, "after ping")
}

func TestStopDuringBackoffReturnsPromptly(t *testing.T) {
	t.Parallel()
	inBackoff := make(chan struct{}, 1)
	e := newEnv(t, &Config{ReconnectBackoff: func(int) time.Duration {
		select {
		case inBackoff <- struct{}{}:
		default:
		}
		return time.Hour
	}})
	status := e.onStatus()
	e.listen("t")
	e.start()
	status.expect(t, true)

	e.terminate(e.listenerPID())
	status.expect(t, false)
	select {
	case <-inBackoff:
	case <-time.After(waitTimeout):
		t.Fatal("the notifier did not start backing off")
	}
	if e.n.Connected() {
		t.Fatal("Connected while backing off")
	}

	start := time.Now()
	e.n.Stop()
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Stop took %v during an hour-long backoff", elapsed)
	}
	status.expectNone(t) // false was already delivered
	if got := e.c.open.Load(); got != 0 {
		t.Fatalf("%d listener connections open after Stop", got)
	}
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fail func(c *control, fail bool)
	}{
		{"factory", func(c *control, fail bool) { c.failFactory.Store(fail) }},
		{"connect", func(c *control, fail bool) { c.failConnect.Store(fail) }},
		{"listen", func(c *control, fail bool) { c.failListen.Store(fail) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			status := e.onStatus()
			_, col := e.listen("t")

			tc.fail(e.c, true)
			started := e.n.Started()
			if err := e.n.Start(ctxFor(t)); err == nil {
				t.Fatal("Start succeeded with a failing listener")
			}
			select {
			case <-started:
			case <-time.After(waitTimeout):
				t.Error("Started channel not closed after a failed start (startstop's stopped() should close it)")
			}
			if e.n.Connected() {
				t.Fatal("Connected after a failed start")
			}
			if got := e.c.open.Load(); got != 0 {
				t.Fatalf("%d listener connections left open by a failed start", got)
			}
			status.expectNone(t)
			e.n.Stop() // harmless after a failed start

			tc.fail(e.c, false)
			e.start()
			status.expect(t, true)
			e.notify("t", "works")
			col.expect(t, "works")
		})
	}
}

func TestStartWithCancelledContext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.n.Start(ctx); err == nil {
		t.Fatal("Start with a cancelled context succeeded")
	}
	e.start()
}

func TestStartStopCycles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	status := e.onStatus()
	_, col := e.listen("t")

	e.n.Stop() // Stop before any Start
	for i := range 4 {
		e.start()
		e.start() // a second Start is a no-op
		status.expect(t, true)
		e.notify("t", payload(i))
		col.expect(t, payload(i))

		stopped := e.n.Stopped()
		e.n.Stop()
		select {
		case <-stopped:
		default:
			t.Fatal("Stopped channel open after Stop returned")
		}
		e.n.Stop() // double Stop
		status.expect(t, false)
		if e.n.Connected() {
			t.Fatal("Connected after Stop")
		}
		if got := e.c.open.Load(); got != 0 {
			t.Fatalf("cycle %d: %d listener connections open after Stop", i, got)
		}
	}
	if got := e.c.connects.Load(); got != 4 {
		t.Fatalf("%d connections made, want 4", got)
	}
	// Listen while stopped returns at once; the next Start applies it.
	_, col2 := e.listen("t2")
	e.start()
	e.notify("t2", "x")
	col2.expect(t, "x")
}

func TestStopsWhenStartContextEnds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := e.n.Stopped()
	if err := e.n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(waitTimeout):
		t.Fatal("the notifier kept running after its start context was cancelled")
	}
	if got := e.c.open.Load(); got != 0 {
		t.Fatalf("%d listener connections open", got)
	}
	// It can be started again.
	_, col := e.listen("t")
	e.start()
	e.notify("t", "again")
	col.expect(t, "again")
}

func TestDefaultReconnectBackoff(t *testing.T) {
	t.Parallel()
	for attempt := range 40 {
		base := backoffMax
		if attempt <= 8 {
			base = min(backoffMin<<(max(attempt, 1)-1), backoffMax)
		}
		hi := min(base+base/4, backoffMax)
		for range 50 {
			if d := DefaultReconnectBackoff(attempt); d < base || d > hi {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, base, hi)
			}
		}
	}
}
