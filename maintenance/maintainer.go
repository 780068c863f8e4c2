package maintenance

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/millrace/millrace/startstop"
)

// LeaderSource tells a Maintainer when its client becomes and stops being
// leader (the elector implements it).
type LeaderSource interface {
	Subscribe(fn func(isLeader bool)) (unsubscribe func())
}

// Maintainer runs services while its client leads: it starts them all
// (startstop.StartAll) on becoming leader and stops them
// (startstop.StopAllParallel) on losing leadership or at Stop.
type Maintainer struct {
	startstop.BaseStartStop

	leader   LeaderSource
	services []startstop.Service
	logger   *slog.Logger

	mu      sync.Mutex
	running bool
}

// NewMaintainer returns a maintainer of services, or an error wrapping
// ErrInvalidConfig for a nil leader or service. A nil logger discards.
func NewMaintainer(leader LeaderSource, logger *slog.Logger, services ...startstop.Service) (*Maintainer, error) {
	const name = "maintainer"
	if leader == nil {
		return nil, invalid(name, "nil leader source")
	}
	for i, svc := range services {
		if svc == nil {
			return nil, invalid(name, "service %d is nil", i)
		}
	}
	return &Maintainer{leader: leader, services: services, logger: orDiscard(logger)}, nil
}

// Running reports whether the services are running (the client leads).
func (m *Maintainer) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

// Start follows leadership until Stop.
func (m *Maintainer) Start(ctx context.Context) error {
	ctx, shouldStart, started, stopped := m.StartInit(ctx)
	if !shouldStart {
		return nil
	}
	// The latest leadership state wins; the subscriber never blocks.
	var want atomic.Bool
	changed := make(chan struct{}, 1)
	unsubscribe := m.leader.Subscribe(func(isLeader bool) {
		want.Store(isLeader)
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	go func() {
		defer stopped()
		defer unsubscribe()
		started()
		for {
			select {
			case <-ctx.Done():
				m.set(ctx, false)
				return
			case <-changed:
				m.set(ctx, want.Load())
			}
		}
	}()
	return nil
}

func (m *Maintainer) set(ctx context.Context, lead bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case lead && !m.running:
		if err := startstop.StartAll(ctx, m.services...); err != nil {
			m.logger.Error("maintenance: starting leader services failed", "error", err)
			return
		}
		m.running = true
		m.logger.Info("maintenance: this client leads; maintenance services started")
	case !lead && m.running:
		startstop.StopAllParallel(m.services...)
		m.running = false
		m.logger.Info("maintenance: maintenance services stopped")
	}
}
