// Package startstop defines the lifecycle shared by every long-lived part of
// millrace (the client, each producer, the notifier, the completer, the
// elector and the maintenance services) and provides BaseStartStop, which
// gives a type that embeds it a lifecycle that is safe to start, stop and
// restart from any number of goroutines.
//
// # The contract
//
// A Service has three methods:
//
//   - Start(ctx) is called synchronously. It performs whatever set-up must
//     succeed before it returns, returns an error if set-up fails, and leaves
//     the long-running work to goroutines of its own. Start on a service
//     that is already running is a no-op that returns nil.
//   - Started() returns a channel that is closed when start-up has finished,
//     or when a failed start-up has finished cleaning up, so a waiter is
//     never stranded.
//   - Stop() returns only when the service has fully stopped and none of its
//     goroutines is left. Stop on a service that was never started, a second
//     Stop, and Stops racing each other are all harmless.
//
// A stopped service can be started again; every run gets fresh Started and
// Stopped channels.
//
// # Embedding BaseStartStop
//
// A service embeds BaseStartStop (its zero value is ready to use) and writes
// Start like this:
//
//	type pinger struct {
//		startstop.BaseStartStop
//		// configuration and dependencies ...
//	}
//
//	func (p *pinger) Start(ctx context.Context) error {
//		ctx, shouldStart, started, stopped := p.StartInit(ctx)
//		if !shouldStart {
//			return nil // already running
//		}
//
//		if err := p.setUp(ctx); err != nil {
//			p.StartFailed(stopped) // cancels ctx, releases waiters, allows a retry
//			return err
//		}
//
//		go func() {
//			defer stopped() // always, and last: Stop waits for it
//			started()
//
//			for {
//				select {
//				case <-ctx.Done(): // Stop was called (or the parent was cancelled)
//					return
//				case <-time.After(time.Second):
//					p.ping(ctx)
//				}
//			}
//		}()
//		return nil
//	}
//
// The rules are:
//
//   - Call StartInit first and return nil when shouldStart is false.
//   - Use the context StartInit returns for all of the run's work. Stop
//     cancels it with cause ErrStop, so context.Cause(ctx) == ErrStop tells
//     a requested stop from any other cancellation.
//   - The run goroutine must call defer stopped() as its first statement, so
//     that stopped runs after everything else it does, even on panic. Once
//     stopped has been called Stop returns, so nothing belonging to the run
//     may still be running then. A service with several goroutines waits for
//     all of them (a sync.WaitGroup, say) before calling stopped.
//   - Call started once the service is ready. stopped closes the Started
//     channel too, so a run that never got that far still releases waiters.
//   - If set-up fails after StartInit, call StartFailed(stopped) and return
//     the error. The service is then back to its initial state and Start may
//     be tried again. (A Start that only calls stopped is also tolerated:
//     the next StartInit notices that the previous run has ended and starts
//     afresh.)
//
// Started, Stopped and Stop come from BaseStartStop. Started and Stopped may
// be called before Start; the channel they return is the one that closes
// when the next run starts or stops.
//
// StartStopFunc builds a Service from a single function, for services too
// small to deserve a type.
//
// # Custom Stop methods
//
// A service whose Stop must do more than cancel its context and wait (the
// client, for example, first lets in-flight jobs finish) builds it from
// StopInit:
//
//	func (c *Client) Stop() {
//		shouldStop, stopped, finalizeStop := c.StopInit()
//		if !shouldStop {
//			return // not running
//		}
//		// The lifecycle lock is now held: Start and other Stops wait.
//		c.drainInFlightWork()
//		c.waitForServices() // may use c.StoppedUnsafe()
//		<-stopped
//		finalizeStop(true) // reset; the client can be started again
//	}
//
// StopInit cancels the run's context with ErrStop and then holds the
// service's lifecycle lock until finalizeStop is called, which must happen
// exactly once: finalizeStop(true) after the stopped channel has closed, or
// finalizeStop(false) to give up, leaving the service marked running so that
// another Stop can be tried. Code running while the lock is held reaches the
// stopped channel through StoppedUnsafe, which never waits for the lock and
// never allocates. Started and Stopped do not wait for the lock either, so
// other goroutines can keep using them while a custom Stop runs.
//
// # Groups of services
//
// StartAll starts services in order and, if one fails, stops the ones
// already started before returning the error. StopAllParallel stops several
// services at once. WaitAllStarted and WaitAllStartedC wait until a group
// has started.
package startstop
