package producer

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/testfixture"
	"github.com/millrace/millrace/internal/testwait"
	"github.com/millrace/millrace/millracetype"
)

// deepFrame uses about 3 kB of stack, so a job calling it needs an 8 kB
// stack, the reserve included.
//
//go:noinline
func deepFrame() byte {
	var buf [3000]byte
	for i := range buf {
		buf[i] = byte(i)
	}
	return buf[len(buf)-1]
}

// TestIdleWorkerStacksNotShrunk: garbage collections while workers wait
// for their next job do not shrink their stacks (workerStackReserve), so
// the next job does not grow and copy them again. Without the reserve,
// three collections take each idle worker's 8 kB stack down to 2 kB.
// (400 workers: their 2.4 MB of shrinkable stack dwarfs what the
// producer's own goroutines, the pool's and the runtime's may free.)
//
// Not parallel: it reads the process's stack memory, which other tests'
// goroutines would disturb.
func TestIdleWorkerStacksNotShrunk(t *testing.T) {
	db := testfixture.New(t)
	const n = 400
	var wg sync.WaitGroup
	wg.Add(n)
	release := make(chan struct{})
	var mu sync.Mutex
	var jobs []*millracetype.JobRow
	var sum byte
	p := newProducer(t, db, nil, Config{MaxWorkers: n, Work: func(ctx context.Context, job *millracetype.JobRow) {
		b := deepFrame()
		mu.Lock()
		jobs = append(jobs, job)
		sum += b
		mu.Unlock()
		wg.Done()
		<-release // all n jobs run at once: n workers, n grown stacks
	}})
	db.InsertJobs(t, n, "k", "default")
	startProducer(t, p)
	wg.Wait()
	close(release)
	testwait.For(t, 10*time.Second, "the workers to be idle", func() bool { return p.Running() == 0 })

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 3 {
		runtime.GC() // each collection may halve an idle goroutine's stack
	}
	runtime.ReadMemStats(&after)
	// Shrinking would free about 6 kB per worker; allow a quarter of
	// that for other goroutines' stacks.
	if freed := int64(before.StackInuse) - int64(after.StackInuse); freed > n*6<<10/4 {
		t.Errorf("collections freed %d kB of stack with %d workers idle: their stacks were shrunk", freed>>10, n)
	}
	for _, job := range jobs {
		complete(t, db, job)
	}
	_ = sum
}
