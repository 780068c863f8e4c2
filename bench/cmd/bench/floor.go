package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// floorSystem is the latency scenario's bar: the least a job system on
// River's schema can do between an insert and the start of its job. An
// insert writes the row and notifies in one statement; one connection
// LISTENs, and each notification starts a fetch at once (the SQL loop's
// fetch alone, committed), on a connection of its own, beside any still
// running; each job fetched is worked as it is read, and a completer
// marks the worked jobs completed in batches on another connection. No
// pool of workers, no debounce, no leader, no maintenance: what is left
// is the round trip and the commit a job cannot start without.
type floorSystem struct {
	pool     *pgxpool.Pool
	queue    string
	channel  string // the LISTEN channel of this schema's inserts
	fetch    string
	complete string
	insert   string
	work     workFunc

	cancel    context.CancelFunc
	done      chan struct{}
	completed chan int64 // worked, to be marked completed
	mu        sync.Mutex
	err       error // the first of a goroutine's, when it ended other than by Stop
}

// floorBatch is the most jobs a fetch of the floor takes; floorFetches is
// the most fetches it runs at once (a notification that finds them all
// running waits for one to end).
const (
	floorBatch   = 1000
	floorFetches = 4
)

func newSQLFloor(pool *pgxpool.Pool, schema string, queues []string, work workFunc) (*floorSystem, error) {
	if len(queues) != 1 {
		return nil, fmt.Errorf("the SQL floor works one queue, not %d (it runs in the latency scenarios only)", len(queues))
	}
	table := pgx.Identifier{schema, "river_job"}.Sanitize()
	return &floorSystem{
		pool:     pool,
		queue:    queues[0],
		channel:  schema + "_floor",
		fetch:    "WITH " + loopFetchSQL(table, "$1", "$2", "$3"),
		complete: "UPDATE " + table + " SET state = 'completed', finalized_at = now() WHERE id = ANY($1::bigint[]) AND state = 'running'",
		insert: `WITH j AS (
	INSERT INTO ` + table + ` (args, kind, max_attempts, priority, queue, state)
	VALUES ($1, $2, 25, 1, $3, 'available')
	RETURNING id
), n AS (SELECT pg_notify($4, ''))
SELECT j.id FROM j, n`,
		work: work,
	}, nil
}

// Start listens, fetches what is already there, then fetches on every
// notification until Stop.
func (f *floorSystem) Start(ctx context.Context) error {
	if f.done != nil {
		return errors.New("sql floor: started twice")
	}
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("sql floor: listen connection: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{f.channel}.Sanitize()); err != nil {
		conn.Release()
		return fmt.Errorf("sql floor: listen: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel, f.done, f.completed = cancel, make(chan struct{}), make(chan int64, floorBatch)
	go func() {
		defer close(f.done)
		var wg sync.WaitGroup
		wg.Go(func() { f.fail(runCtx, f.completer(runCtx)) })
		f.fail(runCtx, f.listen(runCtx, conn.Conn(), &wg))
		// The listening connection goes back closed: it still listens.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
		cancel()
		wg.Wait()
	}()
	return nil
}

// fail records err, unless it comes of Stop, and ends the floor.
func (f *floorSystem) fail(ctx context.Context, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
	f.cancel()
}

// listen starts a fetch now and one on every notification, at most
// floorFetches at once, until ctx ends.
func (f *floorSystem) listen(ctx context.Context, conn *pgx.Conn, wg *sync.WaitGroup) error {
	slots := make(chan struct{}, floorFetches)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Go(func() {
			defer func() { <-slots }()
			f.fail(ctx, f.fetchOnce(ctx))
		})
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("sql floor: wait for a notification: %w", err)
		}
	}
}

// fetchOnce fetches, works each job as it is read and hands it to the
// completer.
func (f *floorSystem) fetchOnce(ctx context.Context) error {
	// The plan setting millrace's fetch runs behind, for this statement's
	// implicit transaction only. Without it the floor fell behind its
	// 500 inserts a second in a trial round (p50 2.03 ms against 0.69
	// with it), most likely by the plan Postgres picks for the fetch on
	// a small table that grows by every completed job (not traced).
	batch := &pgx.Batch{}
	batch.Queue("SELECT set_config('enable_seqscan', 'off', true)")
	batch.Queue(f.fetch, f.queue, floorBatch, "sql_floor")
	br := f.pool.SendBatch(ctx, batch)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("sql floor: fetch's plan setting: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("sql floor: fetch: %w", err)
	}
	var (
		id      int64
		kind    string
		args    []byte
		attempt int
	)
	var worked []int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &kind, &args, &attempt}, func() error {
		worked = append(worked, id)
		return f.work(ctx, id)
	}); err != nil {
		return fmt.Errorf("sql floor: fetch: %w", err)
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("sql floor: fetch: %w", err)
	}
	for _, id := range worked {
		select {
		case f.completed <- id:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// completer marks worked jobs completed: whatever has come in by the time
// its previous statement returned, in one statement.
func (f *floorSystem) completer(ctx context.Context) error {
	for {
		var ids []int64
		select {
		case id := <-f.completed:
			ids = append(ids, id)
		case <-ctx.Done():
			return nil
		}
	more:
		for len(ids) < floorBatch {
			select {
			case id := <-f.completed:
				ids = append(ids, id)
			default:
				break more
			}
		}
		if _, err := f.pool.Exec(ctx, f.complete, ids); err != nil {
			return fmt.Errorf("sql floor: complete: %w", err)
		}
	}
}

// Stop ends the floor (fetches and completions in progress are
// cancelled: their jobs stay running, as a killed worker's would) and
// returns the first error it met, if any.
func (f *floorSystem) Stop(context.Context) error {
	if f.done == nil {
		return nil
	}
	f.cancel()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *floorSystem) Insert(ctx context.Context, args noopArgs) (int64, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return 0, err
	}
	var id int64
	if err := f.pool.QueryRow(ctx, f.insert, b, args.Kind(), f.queue, f.channel).Scan(&id); err != nil {
		return 0, fmt.Errorf("sql floor: insert: %w", err)
	}
	return id, nil
}

func (f *floorSystem) InsertMany(ctx context.Context, args []noopArgs) ([]int64, error) {
	ids := make([]int64, 0, len(args))
	for _, a := range args {
		id, err := f.Insert(ctx, a)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (f *floorSystem) InsertManyFast(context.Context, []noopArgs) (int, error) {
	return 0, errors.New("sql floor: InsertManyFast is not part of the latency scenarios")
}

func (f *floorSystem) QueueResume(context.Context, string) error {
	return errors.New("sql floor: it has no paused queues")
}
