package notifier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Subscription is one subscriber's interest in one topic, returned by
// Listen. End it with Unlisten.
type Subscription struct {
	n       *Notifier
	topic   string
	fn      func(topic, payload string)
	removed atomic.Bool
	once    sync.Once
}

// statusSub is one OnStatus subscriber.
type statusSub struct {
	fn      func(connected bool)
	removed atomic.Bool
}

// Listen subscribes fn to topic (given without the schema prefix) and
// returns the subscription.
//
// fn is called from the notifier's dispatch goroutine, once for each
// notification on topic, in the order the notifications arrived; the
// subscribers of one topic are called one after another in subscription
// order. fn must return quickly (hand the work to another goroutine, for
// example with a non-blocking send on a buffered channel): while it runs, no
// other subscriber hears of anything. A panic in fn is recovered and logged.
// fn may call Listen and Unlisten, but not Stop (Stop waits for fn).
//
// The first subscription to a topic makes the notifier LISTEN to it, and
// Listen returns once that LISTEN has been run, so a notification sent after
// Listen returns is delivered. If the notifier is not running or its
// connection is down, Listen returns at once and the LISTEN is run when it
// starts or reconnects. If ctx ends before the LISTEN has been run, Listen
// removes the subscription again and returns an error.
func (n *Notifier) Listen(ctx context.Context, topic string, fn func(topic, payload string)) (*Subscription, error) {
	if topic == "" {
		return nil, errors.New("notifier: listen: empty topic")
	}
	if fn == nil {
		return nil, fmt.Errorf("notifier: listen to topic %q: nil function", topic)
	}

	sub := &Subscription{n: n, topic: topic, fn: fn}

	n.mu.Lock()
	subs := n.topics[topic]
	if len(subs) == 0 {
		n.topicsChangedLocked()
	}
	n.topics[topic] = append(slices.Clip(subs), sub)
	gen := n.gen
	n.mu.Unlock()

	if err := n.waitApplied(ctx, gen); err != nil {
		sub.Unlisten(ctx) // ctx has ended: Unlisten does not wait
		return nil, fmt.Errorf("notifier: listen to topic %q: %w", topic, err)
	}
	return sub, nil
}

// Unlisten ends the subscription: once Unlisten has returned, its function
// is not called again (a call already in progress may still be finishing).
// If it was the topic's last subscription, the notifier UNLISTENs from the
// topic, and Unlisten waits for that while the notifier is connected, until
// ctx ends at the latest. Calling Unlisten again does nothing.
func (s *Subscription) Unlisten(ctx context.Context) {
	s.once.Do(func() {
		s.removed.Store(true)

		n := s.n
		n.mu.Lock()
		subs := n.topics[s.topic]
		i := slices.Index(subs, s)
		if i < 0 { // not possible, but harmless
			n.mu.Unlock()
			return
		}
		if len(subs) == 1 {
			delete(n.topics, s.topic)
			n.topicsChangedLocked()
		} else {
			n.topics[s.topic] = slices.Delete(slices.Clone(subs), i, i+1)
			n.mu.Unlock()
			return
		}
		gen := n.gen
		n.mu.Unlock()

		_ = n.waitApplied(ctx, gen)
	})
}

// Topic returns the topic the subscription is for.
func (s *Subscription) Topic() string { return s.topic }

// topicsChangedLocked records that the set of topics changed and interrupts
// the run goroutine's wait so that it applies the change. n.mu must be held.
func (n *Notifier) topicsChangedLocked() {
	n.gen++
	n.dirty = true
	if n.interrupt != nil {
		n.interrupt()
	}
}

// waitApplied waits until the topics of generation gen have been applied to
// the connection, or there is no connection to apply them to (the notifier is
// not running, or is reconnecting, which applies them anyway), or ctx ends.
func (n *Notifier) waitApplied(ctx context.Context, gen uint64) error {
	for {
		n.mu.Lock()
		if !n.running || !n.connected || n.appliedGen >= gen {
			n.mu.Unlock()
			return nil
		}
		changed := n.changed
		n.mu.Unlock()

		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// OnStatus subscribes fn to the state of the connection and returns a
// function that ends the subscription (calling it again does nothing).
//
// fn(false) is called as soon as a lost connection is noticed, and when the
// notifier stops, so that subscribers can fall back to polling at once;
// fn(true) when the notifier has started, and each time it has reconnected
// and LISTENed again to every subscribed topic (notifications sent while it
// was down were missed). The calls come from the dispatch goroutine, in order
// with the notifications, and alternate between true and false (though a
// subscriber's first call may repeat what Connected already told it). fn
// must return quickly and must not call Stop; a panic in it is recovered and
// logged.
//
// fn is not called with the state at the time of subscribing. To follow the
// state without a gap, call OnStatus first and Connected after it.
func (n *Notifier) OnStatus(fn func(connected bool)) (unsubscribe func()) {
	sub := &statusSub{fn: fn}

	n.mu.Lock()
	n.statusSubs = append(slices.Clip(n.statusSubs), sub)
	n.mu.Unlock()

	var once sync.Once
	return func() {
		once.Do(func() {
			sub.removed.Store(true)
			n.mu.Lock()
			if i := slices.Index(n.statusSubs, sub); i >= 0 {
				n.statusSubs = slices.Delete(slices.Clone(n.statusSubs), i, i+1)
			}
			n.mu.Unlock()
		})
	}
}
