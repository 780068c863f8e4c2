package maintenance

import (
	"log/slog"
	"time"

	"github.com/millrace/millrace/startstop"
)

// serviceBase is what every maintenance service shares: its lifecycle,
// its name (in logs and errors), the schema its statements use, its
// logger, its clock, and its loop's wake-up channel (see loop.go).
type serviceBase struct {
	startstop.BaseStartStop

	name   string
	schema string
	logger *slog.Logger
	now    func() time.Time
	wake   chan struct{} // requests for a pass at once
	// passes, if set, receives a value after each pass: a test signal,
	// set by the package's tests before Start, never part of the API.
	passes chan struct{}
}

// initBase sets the base up; a nil logger discards and a nil clock is
// time.Now.
func (b *serviceBase) initBase(name, schema string, logger *slog.Logger, now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	b.name, b.schema, b.logger, b.now = name, schema, orDiscard(logger), now
	b.wake = make(chan struct{}, 1)
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
