package startstop_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/millrace/millrace/startstop"
)

// counter is a small service that counts the values sent to it. It gets its
// lifecycle by embedding BaseStartStop.
type counter struct {
	startstop.BaseStartStop

	in    chan int
	mu    sync.Mutex
	total int
}

func newCounter() *counter { return &counter{in: make(chan int)} }

func (c *counter) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := c.StartInit(ctx)
	if !shouldStart {
		return nil // already running
	}

	go func() {
		defer stopped() // runs last: Stop returns once it has
		started()

		for {
			select {
			case <-ctx.Done():
				return
			case n := <-c.in:
				c.mu.Lock()
				c.total += n
				c.mu.Unlock()
			}
		}
	}()
	return nil
}

func (c *counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// A service embeds BaseStartStop, calls StartInit first in Start, and runs
// its work in a goroutine that defers stopped.
func ExampleBaseStartStop() {
	c := newCounter()
	ctx := context.Background()

	if err := c.Start(ctx); err != nil {
		fmt.Println("start:", err)
		return
	}
	<-c.Started()

	c.in <- 2
	c.in <- 3

	stopped := c.Stopped() // take it before Stop to watch this run end
	c.Stop()
	<-stopped
	fmt.Println("total:", c.Total())

	// Stop again is harmless, and the service can be started again.
	c.Stop()
	if err := c.Start(ctx); err != nil {
		fmt.Println("restart:", err)
		return
	}
	c.in <- 5
	c.Stop()
	fmt.Println("total after restart:", c.Total())

	// Output:
	// total: 5
	// total after restart: 10
}

// A start-up error after StartInit is reported with StartFailed, which
// releases anyone waiting on Started and lets Start be tried again.
func ExampleBaseStartStop_StartFailed() {
	var (
		svc      startstop.BaseStartStop
		attempts int
	)
	start := func(ctx context.Context) error {
		ctx, shouldStart, started, stopped := svc.StartInit(ctx)
		if !shouldStart {
			return nil
		}
		attempts++
		if attempts == 1 {
			svc.StartFailed(stopped)
			return errors.New("database not reachable")
		}
		go func() {
			defer stopped()
			started()
			<-ctx.Done()
		}()
		return nil
	}

	waiter := svc.Started()
	fmt.Println("first start:", start(context.Background()))
	<-waiter // released by the failed start
	fmt.Println("second start:", start(context.Background()))
	<-svc.Started()
	svc.Stop()
	fmt.Println("attempts:", attempts)

	// Output:
	// first start: database not reachable
	// second start: <nil>
	// attempts: 2
}

// StartStopFunc turns one function into a Service. The service's context is
// cancelled with cause ErrStop when it is stopped.
func ExampleStartStopFunc() {
	cause := make(chan error, 1)

	svc := startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
		if !shouldStart {
			return nil
		}
		go func() {
			defer stopped()
			started()
			<-ctx.Done()
			cause <- context.Cause(ctx)
		}()
		return nil
	})

	if err := svc.Start(context.Background()); err != nil {
		fmt.Println("start:", err)
		return
	}
	<-svc.Started()
	fmt.Println("running")
	svc.Stop()
	fmt.Println("stopped by Stop:", <-cause == startstop.ErrStop)

	// Output:
	// running
	// stopped by Stop: true
}

// named is a service that prints its lifecycle and can be made to fail.
func named(name string, fail bool) startstop.Service {
	return startstop.StartStopFunc(func(ctx context.Context, shouldStart bool, started, stopped func()) error {
		if !shouldStart {
			return nil
		}
		if fail {
			fmt.Println(name, "failed to start")
			return fmt.Errorf("start %s: %w", name, errors.New("port in use"))
		}
		fmt.Println(name, "started")
		go func() {
			defer stopped()
			started()
			<-ctx.Done()
		}()
		return nil
	})
}

// StartAll starts services in order; when one fails it stops the ones it had
// already started and returns the error. StopAllParallel stops a group at
// once.
func ExampleStartAll() {
	ctx := context.Background()

	a, b := named("a", false), named("b", false)
	if err := startstop.StartAll(ctx, a, b); err != nil {
		fmt.Println(err)
		return
	}
	startstop.WaitAllStarted(a, b)
	startstop.StopAllParallel(a, b)
	fmt.Println("a and b stopped")

	// c never starts: b fails, so a is rolled back.
	a, b, c := named("a", false), named("b", true), named("c", false)
	aStopped := a.(interface{ Stopped() <-chan struct{} }).Stopped()
	err := startstop.StartAll(ctx, a, b, c)
	fmt.Println("StartAll:", err)
	<-aStopped
	fmt.Println("a rolled back")

	// Output:
	// a started
	// b started
	// a and b stopped
	// a started
	// b failed to start
	// StartAll: start b: port in use
	// a rolled back
}

// batcher collects items and writes them out in one batch when it stops,
// the way the completer flushes job results. Its custom Stop, in the style
// of the Client's, waits for the flush and then for the run to end, all while
// StopInit holds the lifecycle lock; it reaches the stopped channel through
// StoppedUnsafe, which does not need that lock.
type batcher struct {
	startstop.BaseStartStop

	in      chan string
	flushed chan []string // receives each run's final batch
}

func newBatcher() *batcher {
	return &batcher{in: make(chan string, 10), flushed: make(chan []string, 1)}
}

func (b *batcher) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := b.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	go func() {
		defer stopped()
		started()

		var batch []string
		for {
			select {
			case item := <-b.in:
				batch = append(batch, item)
			case <-ctx.Done():
				// Take whatever is still queued, then hand the batch over.
				for {
					select {
					case item := <-b.in:
						batch = append(batch, item)
					default:
						b.flushed <- batch
						return
					}
				}
			}
		}
	}()
	return nil
}

func (b *batcher) Stop() {
	shouldStop, _, finalizeStop := b.StopInit() // cancels the run's context
	if !shouldStop {
		return
	}
	batch := <-b.flushed
	fmt.Println("flushed:", strings.Join(batch, ", "))
	<-b.StoppedUnsafe()
	finalizeStop(true)
	fmt.Println("stopped")
}

// A custom Stop is built on StopInit and StoppedUnsafe. Another goroutine
// waiting on Stopped meanwhile is released as usual, with no deadlock.
func ExampleBaseStartStop_StopInit() {
	b := newBatcher()
	if err := b.Start(context.Background()); err != nil {
		fmt.Println("start:", err)
		return
	}
	<-b.Started()
	b.in <- "job 1"
	b.in <- "job 2"

	stopped := b.Stopped()
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		<-stopped
	}()

	b.Stop()
	<-watcher
	b.Stop() // not running any more: a no-op

	// Output:
	// flushed: job 1, job 2
	// stopped
}
