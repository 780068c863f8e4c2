package driver

// SingleWriter is implemented by a driver whose database lets one
// transaction write at a time (SQLite): a write transaction excludes every
// other writer from its start to its end, so there are no row locks to
// skip (FOR UPDATE SKIP LOCKED) and no waiting on one row while others
// are written. Such a driver's statements are safe without them, since no
// two writers interleave; what it cannot do is let a second writer work
// beside a first that keeps its transaction open (the second waits for
// the database, or fails after its busy timeout). A driver that does not
// implement the interface, or returns false, has row locks (Postgres).
type SingleWriter interface {
	SingleWriter() bool
}

// IsSingleWriter reports whether drv declares itself a SingleWriter.
func IsSingleWriter(drv any) bool {
	s, ok := drv.(SingleWriter)
	return ok && s.SingleWriter()
}
