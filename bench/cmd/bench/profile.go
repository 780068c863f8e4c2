package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
)

// profileName names a run's profile files: scenario, point (for scale),
// system and variant, and round ("r1", or "tune-2x2000" for a run of the
// ceiling's sweep), with anything but letters, digits, '-' and '.' turned
// into '_'.
func profileName(scenario, point, system, variant, round string) string {
	parts := []string{scenario}
	if point != "" {
		parts = append(parts, point)
	}
	sys := system
	if variant != "" {
		sys += "-" + variant
	}
	parts = append(parts, sys, round)
	return sanitizeFileName(strings.Join(parts, "_"))
}

func sanitizeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '_'
	}, s)
}

// profiler writes a child's CPU profile and its allocation profile
// (pprof's "allocs": every sampled allocation since the process started,
// at the default runtime.MemProfileRate) into dir as NAME.cpu.pprof and
// NAME.allocs.pprof. A zero profiler (no dir) does nothing.
type profiler struct {
	dir, name string
	cpu       *os.File
}

func startProfile(dir, name string) (*profiler, error) {
	p := &profiler{dir: dir, name: name}
	if dir == "" {
		return p, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, name+".cpu.pprof"))
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("profile: %w", err)
	}
	p.cpu = f
	return p, nil
}

// stop ends the CPU profile and writes the allocation profile. It is safe
// to call more than once; only the first call writes.
func (p *profiler) stop() error {
	if p == nil || p.cpu == nil {
		return nil
	}
	pprof.StopCPUProfile()
	err := p.cpu.Close()
	p.cpu = nil
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	// The allocs profile shows the allocations as of the last GC.
	runtime.GC()
	f, err := os.Create(filepath.Join(p.dir, p.name+".allocs.pprof"))
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	return f.Close()
}
