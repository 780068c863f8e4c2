package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/millrace/millrace/client"
	"github.com/millrace/millrace/driver/databasesql"
	"github.com/millrace/millrace/driver/pgxv5"
)

// noopArgs is the job every scenario runs. One type serves both systems:
// each only needs Kind.
type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return jobKind }

const (
	jobKind = "bench_noop"
	queue   = "default"
	// bulkQueue holds mixed's burndown, next to queue's stream.
	bulkQueue = "bulk"
)

// The configurations the bench compares (see README.md).
const (
	variantDefaults = "defaults" // millrace as shipped; River as shipped (200 workers)
	variantTuned    = "tuned"    // River tuned for throughput, as issue 8 states
	// variantEphemeral is millrace at its defaults with its queue deleting
	// jobs on completion instead of keeping their rows (see
	// configureEphemeral).
	variantEphemeral = "ephemeral"
	// variantDatabaseSQL is millrace at its defaults on driver/databasesql:
	// a *sql.DB of pgx's stdlib over the same pool (so the same number of
	// connections), with a LISTEN connection.
	variantDatabaseSQL = "databasesql"
	// variantLimited is millrace at its defaults with a global concurrency
	// limit on each queue above its workers (limitedGlobal per queue of
	// the default 200), which never holds a job back: what the limit's
	// bookkeeping costs (issue 23; River's users measured their
	// throughput halved by a global limit, riverqueue/river#1145).
	variantLimited = "limited"
	// variantFloor is the hand-written SQL floor of the latency scenarios
	// (system "sql"; see floorSystem).
	variantFloor = "floor"
)

// limitedGlobal is variantLimited's global limit.
const limitedGlobal = 1000

// riverTunedWorkers, riverTunedCooldown and riverTunedPoll are River's
// throughput configuration from issue 8 (never weaker than that).
const (
	riverTunedWorkers  = 2000
	riverTunedCooldown = 2 * time.Millisecond
	riverTunedPoll     = 20 * time.Millisecond
	// defaultWorkers is the queue size both systems get "at defaults":
	// neither has a default MaxWorkers, and 200 is what the River-defaults
	// row of issue 13 was measured with.
	defaultWorkers = 200
)

// workFunc is what a worker does with a job; id is the job's ID.
type workFunc func(ctx context.Context, id int64) error

// system is the little a scenario needs of a job system.
type system interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	Insert(ctx context.Context, args noopArgs) (int64, error)
	InsertMany(ctx context.Context, args []noopArgs) ([]int64, error)
	InsertManyFast(ctx context.Context, args []noopArgs) (int, error)
	QueueResume(ctx context.Context, name string) error
}

// newSystem builds a client of the named system on pool, working queues
// (each of the same size).
func newSystem(name, variant string, pool *pgxpool.Pool, schema string, queues []string, millraceWorkers int, work workFunc, logger *slog.Logger) (system, error) {
	switch name {
	case "millrace":
		return newMillrace(pool, schema, variant, queues, millraceWorkers, work, logger)
	case "river":
		return newRiver(pool, schema, variant, queues, work, logger)
	case "sql":
		if variant == variantFloor {
			return newSQLFloor(pool, schema, queues, work)
		}
	}
	return nil, fmt.Errorf("unknown system %q (variant %q)", name, variant)
}

type millraceSystem struct {
	c millraceClient
	// db is the *sql.DB of variantDatabaseSQL, closed by Stop.
	db *sql.DB
}

// millraceClient is what the bench calls of a client, whatever its
// driver's transaction type.
type millraceClient interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	QueueResume(ctx context.Context, name string) error
	Insert(ctx context.Context, args client.JobArgs, opts *client.InsertOpts) (*client.InsertResult, error)
	InsertMany(ctx context.Context, params []client.InsertManyParams) ([]*client.InsertResult, error)
	InsertManyFast(ctx context.Context, params []client.InsertManyParams) (int, error)
}

func newMillrace(pool *pgxpool.Pool, schema, variant string, queues []string, maxWorkers int, work workFunc, logger *slog.Logger) (*millraceSystem, error) {
	workers := client.NewWorkers()
	client.AddWorker(workers, client.WorkFunc(func(ctx context.Context, job *client.Job[noopArgs]) error {
		return work(ctx, job.ID)
	}))
	// millrace at its defaults: only the queues (which have no default
	// size) are set.
	cfg := &client.Config{
		Schema:  schema,
		Logger:  logger,
		Queues:  map[string]client.QueueConfig{},
		Workers: workers,
	}
	for _, q := range queues {
		cfg.Queues[q] = client.QueueConfig{MaxWorkers: maxWorkers}
	}
	switch variant {
	case variantDefaults:
	case variantEphemeral:
		if err := configureEphemeral(cfg); err != nil {
			return nil, err
		}
	case variantLimited:
		for name, q := range cfg.Queues {
			q.Limits = []client.ConcurrencyLimit{{Global: limitedGlobal}}
			cfg.Queues[name] = q
		}
	case variantDatabaseSQL:
		db := stdlib.OpenDBFromPool(pool)
		drv, err := databasesql.New(db, &databasesql.Options{ListenerConfig: pool.Config().ConnConfig})
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		c, err := client.New(drv, cfg)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		return &millraceSystem{c: c, db: db}, nil
	default:
		return nil, fmt.Errorf("unknown millrace variant %q", variant)
	}
	c, err := client.New(pgxv5.New(pool), cfg)
	if err != nil {
		return nil, err
	}
	return &millraceSystem{c: c}, nil
}

func (m *millraceSystem) Start(ctx context.Context) error { return m.c.Start(ctx) }

func (m *millraceSystem) Stop(ctx context.Context) error {
	err := m.c.Stop(ctx)
	if m.db != nil {
		err = errors.Join(err, m.db.Close())
	}
	return err
}

func (m *millraceSystem) QueueResume(ctx context.Context, name string) error {
	return m.c.QueueResume(ctx, name)
}

func (m *millraceSystem) Insert(ctx context.Context, args noopArgs) (int64, error) {
	res, err := m.c.Insert(ctx, args, nil)
	if err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

func (m *millraceSystem) InsertMany(ctx context.Context, args []noopArgs) ([]int64, error) {
	params := make([]client.InsertManyParams, len(args))
	for i, a := range args {
		params[i] = client.InsertManyParams{Args: a}
	}
	res, err := m.c.InsertMany(ctx, params)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.Job.ID
	}
	return ids, nil
}

func (m *millraceSystem) InsertManyFast(ctx context.Context, args []noopArgs) (int, error) {
	params := make([]client.InsertManyParams, len(args))
	for i, a := range args {
		params[i] = client.InsertManyParams{Args: a}
	}
	return m.c.InsertManyFast(ctx, params)
}

type riverSystem struct {
	c *river.Client[pgx.Tx]
}

func newRiver(pool *pgxpool.Pool, schema, variant string, queues []string, work workFunc, logger *slog.Logger) (*riverSystem, error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[noopArgs]) error {
		return work(ctx, job.ID)
	}))
	cfg := &river.Config{
		Schema:  schema,
		Logger:  logger,
		Queues:  map[string]river.QueueConfig{},
		Workers: workers,
	}
	size := defaultWorkers
	switch variant {
	case variantTuned:
		size = riverTunedWorkers
		cfg.FetchCooldown = riverTunedCooldown
		cfg.FetchPollInterval = riverTunedPoll
	case variantDefaults:
	default:
		return nil, fmt.Errorf("unknown River variant %q", variant)
	}
	for _, q := range queues {
		cfg.Queues[q] = river.QueueConfig{MaxWorkers: size}
	}
	c, err := river.NewClient(riverpgxv5.New(pool), cfg)
	if err != nil {
		return nil, err
	}
	return &riverSystem{c: c}, nil
}

func (r *riverSystem) Start(ctx context.Context) error { return r.c.Start(ctx) }
func (r *riverSystem) Stop(ctx context.Context) error  { return r.c.Stop(ctx) }

func (r *riverSystem) QueueResume(ctx context.Context, name string) error {
	return r.c.QueueResume(ctx, name, nil)
}

func (r *riverSystem) Insert(ctx context.Context, args noopArgs) (int64, error) {
	res, err := r.c.Insert(ctx, args, nil)
	if err != nil {
		return 0, err
	}
	return res.Job.ID, nil
}

func (r *riverSystem) InsertMany(ctx context.Context, args []noopArgs) ([]int64, error) {
	params := make([]river.InsertManyParams, len(args))
	for i, a := range args {
		params[i] = river.InsertManyParams{Args: a}
	}
	res, err := r.c.InsertMany(ctx, params)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(res))
	for i, x := range res {
		ids[i] = x.Job.ID
	}
	return ids, nil
}

func (r *riverSystem) InsertManyFast(ctx context.Context, args []noopArgs) (int, error) {
	params := make([]river.InsertManyParams, len(args))
	for i, a := range args {
		params[i] = river.InsertManyParams{Args: a}
	}
	return r.c.InsertManyFast(ctx, params)
}
