package pgexec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver"
)

// listener holds one dedicated connection for LISTEN. It is not meant for
// concurrent use beyond what its lock serialises: the notifier interrupts
// WaitForNotification (by cancelling its context) before it calls Listen or
// Unlisten.
type listener struct {
	config *pgx.ConnConfig
	schema string

	mu     sync.Mutex
	conn   *pgx.Conn
	prefix string // "<schema>." or "" when the connection has no schema
}

func (l *listener) Connect(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		return errors.New("listener: already connected")
	}
	conn, err := pgx.ConnectConfig(ctx, l.config)
	if err != nil {
		return fmt.Errorf("listener: connect: %w", err)
	}
	prefix := ""
	if l.schema != "" {
		prefix = l.schema + "."
	} else {
		var current *string
		if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
			return fmt.Errorf("listener: read current schema: %w", err)
		}
		if current != nil && *current != "" {
			prefix = *current + "."
		}
	}
	l.conn, l.prefix = conn, prefix
	return nil
}

func (l *listener) Close(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil
	}
	err := l.conn.Close(ctx)
	l.conn = nil
	return err
}

func (l *listener) Listen(ctx context.Context, topic string) error {
	return l.exec(ctx, "LISTEN", topic)
}

func (l *listener) Unlisten(ctx context.Context, topic string) error {
	return l.exec(ctx, "UNLISTEN", topic)
}

func (l *listener) exec(ctx context.Context, verb, topic string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return driver.ErrClosed
	}
	_, err := l.conn.Exec(ctx, verb+" "+pgx.Identifier{l.prefix + topic}.Sanitize())
	return err
}

func (l *listener) Ping(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return driver.ErrClosed
	}
	return l.conn.Ping(ctx)
}

func (l *listener) WaitForNotification(ctx context.Context) (*driver.Notification, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil, driver.ErrClosed
	}
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		return nil, err
	}
	return &driver.Notification{Topic: strings.TrimPrefix(n.Channel, l.prefix), Payload: n.Payload}, nil
}

// NewListener returns an unconnected listener that will open its own
// connection with config (copied) for the schema's channels.
func NewListener(config *pgx.ConnConfig, schema string) driver.Listener {
	return &listener{config: config.Copy(), schema: schema}
}
