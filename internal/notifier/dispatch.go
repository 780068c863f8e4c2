package notifier

import (
	"runtime/debug"
	"sync"
)

// maxQueuedNotifications is how many notifications may wait for the dispatch
// goroutine. Beyond it (a subscriber that blocks) further notifications are
// dropped, with a warning, rather than using unbounded memory: notifications
// are hints, and every subscriber also polls. Status changes are never
// dropped.
const maxQueuedNotifications = 10_000

// event is one thing to tell subscribers: a notification, or (isStatus) a
// change of connection state.
type event struct {
	isStatus  bool
	connected bool
	topic     string
	payload   string
}

// dispatcher runs one run's dispatch goroutine: it calls subscribers for the
// events the run goroutine queues, in order.
type dispatcher struct {
	n *Notifier

	mu       sync.Mutex
	queue    []event
	queued   int  // notifications in queue
	dropping bool // notifications are being dropped (logged once)
	closed   bool

	wake chan struct{} // buffered(1): the queue or closed changed
	done chan struct{} // closed when the dispatch goroutine exits
}

func newDispatcher(n *Notifier) *dispatcher {
	return &dispatcher{n: n, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// notify queues a notification.
func (d *dispatcher) notify(topic, payload string) {
	d.mu.Lock()
	if d.queued >= maxQueuedNotifications {
		first := !d.dropping
		d.dropping = true
		d.mu.Unlock()
		if first {
			d.n.logger.Warn("notifier: subscribers are not keeping up; dropping notifications", "schema", d.n.schema, "queued", maxQueuedNotifications)
		}
		return
	}
	d.dropping = false
	d.queue = append(d.queue, event{topic: topic, payload: payload})
	d.queued++
	d.mu.Unlock()
	d.signal()
}

// status queues a change of connection state.
func (d *dispatcher) status(connected bool) {
	d.mu.Lock()
	d.queue = append(d.queue, event{isStatus: true, connected: connected})
	d.mu.Unlock()
	d.signal()
}

// closeAndWait lets the dispatch goroutine deliver what is queued, then
// exit, and waits for it.
func (d *dispatcher) closeAndWait() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.signal()
	<-d.done
}

func (d *dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run is the dispatch goroutine.
func (d *dispatcher) run() {
	defer close(d.done)
	for {
		d.mu.Lock()
		events, closed := d.queue, d.closed
		d.queue, d.queued = nil, 0
		d.mu.Unlock()

		if len(events) == 0 {
			if closed {
				return
			}
			<-d.wake
			continue
		}
		for _, ev := range events {
			d.deliver(ev)
		}
	}
}

// deliver calls the current subscribers of one event.
func (d *dispatcher) deliver(ev event) {
	n := d.n
	n.mu.Lock()
	var topicSubs []*Subscription
	var statusSubs []*statusSub
	if ev.isStatus {
		statusSubs = n.statusSubs
	} else {
		topicSubs = n.topics[ev.topic]
	}
	n.mu.Unlock()

	// The slices are never modified in place, so they are safe to range
	// over without the lock; the removed flags catch subscriptions that
	// end meanwhile.
	for _, sub := range topicSubs {
		if !sub.removed.Load() {
			d.call(ev, func() { sub.fn(ev.topic, ev.payload) })
		}
	}
	for _, sub := range statusSubs {
		if !sub.removed.Load() {
			d.call(ev, func() { sub.fn(ev.connected) })
		}
	}
}

// call runs one subscriber, recovering and logging a panic.
func (d *dispatcher) call(ev event, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			if ev.isStatus {
				d.n.logger.Error("notifier: status subscriber panicked", "schema", d.n.schema, "connected", ev.connected, "panic", r, "stack", string(debug.Stack()))
			} else {
				d.n.logger.Error("notifier: subscriber panicked", "schema", d.n.schema, "topic", ev.topic, "panic", r, "stack", string(debug.Stack()))
			}
		}
	}()
	fn()
}
