package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// cpuReading is CPU time used so far: by this process (the system's client
// and the bench's own light monitoring), and by the Postgres server when it
// runs on this machine.
type cpuReading struct {
	client time.Duration
	server time.Duration
	// serverSeen is false when no postgres process is visible here (a
	// remote server, or another PID namespace): server is then unknown.
	serverSeen bool
}

// clockTick is the unit of utime and stime in /proc/PID/stat. It is
// USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// readCPU reads a cpuReading. The server's CPU is the sum, over processes
// named postgres, of their own user and system time, plus, for the
// postmaster (a postgres process whose parent is not one), the time of its
// children that have exited: a backend that ends during a run has its time
// moved there when the postmaster reaps it, so it is neither lost nor
// counted twice.
func readCPU() cpuReading {
	var r cpuReading
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	type proc struct {
		ppid                         int
		utime, stime, cutime, cstime int64
	}
	procs := map[int]proc{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ... utime(14) stime(15) cutime(16) cstime(17)
		open, closing := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || closing < open || string(b[open+1:closing]) != "postgres" {
			continue
		}
		f := bytes.Fields(b[closing+1:])
		if len(f) < 15 {
			continue
		}
		num := func(i int) int64 { n, _ := strconv.ParseInt(string(f[i]), 10, 64); return n }
		// f[0] is the state, so field k of the man page is f[k-3].
		procs[pid] = proc{ppid: int(num(1)), utime: num(11), stime: num(12), cutime: num(13), cstime: num(14)}
	}
	var ticks int64
	for _, p := range procs {
		ticks += p.utime + p.stime
		if _, parentIsPostgres := procs[p.ppid]; !parentIsPostgres {
			ticks += p.cutime + p.cstime
		}
	}
	r.server, r.serverSeen = serverHigh.at(time.Duration(ticks)*clockTick), len(procs) > 0
	return r
}

// serverHigh keeps the server's readings from going back. The /proc
// files are not read at one instant: a backend that exits between the
// reading of its own file and of the postmaster's (whose children's times
// then hold it) is counted twice or not at all, so a reading can fall a
// few milliseconds below an earlier one. Readings are clamped to the
// highest seen, which undercounts by at most that much.
var serverHigh highWater

// highWater is a non-decreasing reading.
type highWater struct {
	mu  sync.Mutex
	max time.Duration
}

// at returns d, or the highest value given before when that is higher.
func (h *highWater) at(d time.Duration) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.max = max(h.max, d)
	return h.max
}

// cpuPerJob turns two readings into microseconds per job; the server's is
// -1 when it was not visible.
func cpuPerJob(before, after cpuReading, jobs int) (client, server float64) {
	n := float64(max(jobs, 1))
	client = float64((after.client - before.client).Microseconds()) / n
	server = -1
	if before.serverSeen && after.serverSeen {
		server = float64((after.server - before.server).Microseconds()) / n
	}
	return client, server
}
