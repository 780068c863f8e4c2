package faults

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// freezeProxy is a TCP proxy in front of the database that can freeze: it
// then forwards nothing in either direction and opens no new upstream
// connection, but closes nothing either, as a network partition looks to
// both ends (TCP keeps the connections open; their bytes just stop). Thaw
// lets everything held back through.
type freezeProxy struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex
	frozen bool
	thawed *sync.Cond
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// newFreezeProxy listens on a local port in front of upstream (host:port)
// until the test ends.
func newFreezeProxy(t *testing.T, upstream string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, upstream: upstream}
	p.thawed = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *freezeProxy) Addr() string { return p.ln.Addr().String() }

// Freeze stops all traffic.
func (p *freezeProxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

// Thaw lets traffic through again, what was held back first.
func (p *freezeProxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = false
	p.thawed.Broadcast()
}

// gate blocks while the proxy is frozen; it reports false once closed.
func (p *freezeProxy) gate() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.frozen && !p.closed {
		p.thawed.Wait()
	}
	return !p.closed
}

func (p *freezeProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *freezeProxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(down) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if !p.gate() { // no new connection through a partition
				return
			}
			up, err := net.Dial("tcp", p.upstream)
			if err != nil || !p.track(up) {
				_ = down.Close()
				return
			}
			p.wg.Add(2)
			go p.pipe(up, down)
			go p.pipe(down, up)
		}()
	}
}

// pipe copies from src to dst, holding each chunk while frozen.
func (p *freezeProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				_ = src.Close()
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = dst.Close()
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

func (p *freezeProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.thawed.Broadcast()
	conns := p.conns
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	p.wg.Wait()
}

// The proxy must really hold traffic back while frozen and let it through
// once thawed (the partition test proves nothing otherwise).
func TestFreezeProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	p := newFreezeProxy(t, echo.Addr().String())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip := func(msg string) <-chan string {
		got := make(chan string, 1)
		go func() {
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- string(buf)
		}()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := <-roundTrip("before"); got != "before" {
		t.Fatalf("through the proxy: %q", got)
	}
	p.Freeze()
	got := roundTrip("during")
	select {
	case v := <-got:
		t.Fatalf("a frozen proxy let %q through", v)
	case <-time.After(300 * time.Millisecond): // absence can only be waited for
	}
	p.Thaw()
	if v := <-got; v != "during" {
		t.Fatalf("after the thaw: %q, want the bytes held back", v)
	}
}
