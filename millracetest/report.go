package millracetest

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/millrace/millrace/millracetype"
)

// nearestShown is how many non-matching jobs a failure describes.
const nearestShown = 5

// nilTBOutput receives the complaint about a nil testing.TB (a variable
// so that tests can read it).
var nilTBOutput io.Writer = os.Stderr

// requireTB stops the calling goroutine when tb is nil: nothing can be
// reported through a nil tb, and returning would let the test pass. In a
// test, the testing package reports the stopped goroutine as a failure
// ("test executed panic(nil) or runtime.Goexit"); the line written to
// standard error says why.
func requireTB(tb testing.TB, fn string) {
	if isNil(tb) {
		fmt.Fprintf(nilTBOutput, "millracetest: %s: the testing.TB is nil, so no failure can be reported; stopping the goroutine\n", fn)
		runtime.Goexit()
	}
}

// fatal fails tb with a message prefixed by the package and function.
func fatal(tb testing.TB, fn, format string, args ...any) {
	tb.Helper()
	tb.Fatalf("millracetest: "+fn+": "+format, args...)
}

// describe is a one-line summary of a job.
func describe(row *millracetype.JobRow) string {
	return fmt.Sprintf("job %d (kind %q, state %s, queue %q, priority %d, args %s)",
		row.ID, row.Kind, row.State, row.Queue, row.Priority, compact(row.Args))
}

// writeDiffs writes one indented line per differing field.
func writeDiffs(b *strings.Builder, indent string, diffs []fieldDiff) {
	for _, d := range diffs {
		fmt.Fprintf(b, "\n%s%s: want %s, got %s", indent, d.field, d.want, d.got)
	}
}

// nearestReport describes the jobs of rows closest to e: fewest
// differing fields first, then newest first, at most nearestShown.
func nearestReport(e *expectation, rows []*millracetype.JobRow) string {
	type near struct {
		row   *millracetype.JobRow
		diffs []fieldDiff
	}
	nears := make([]near, len(rows))
	for i, r := range rows {
		nears[i] = near{r, e.diff(r)}
	}
	slices.SortStableFunc(nears, func(a, b near) int {
		if c := cmp.Compare(len(a.diffs), len(b.diffs)); c != 0 {
			return c
		}
		return cmp.Compare(b.row.ID, a.row.ID)
	})
	var b strings.Builder
	for i, n := range nears {
		if i == nearestShown {
			fmt.Fprintf(&b, "\n  (and %d more)", len(nears)-nearestShown)
			break
		}
		fmt.Fprintf(&b, "\n  %s:", describe(n.row))
		writeDiffs(&b, "      ", n.diffs)
	}
	return b.String()
}

// listReport describes rows, newest first, at most nearestShown.
func listReport(rows []*millracetype.JobRow) string {
	var b strings.Builder
	for i := range rows {
		if i == nearestShown {
			fmt.Fprintf(&b, "\n  (and %d more)", len(rows)-nearestShown)
			break
		}
		fmt.Fprintf(&b, "\n  %s", describe(rows[len(rows)-1-i]))
	}
	return b.String()
}

// jobsWord is "1 job" or "n jobs".
func jobsWord(n int) string {
	if n == 1 {
		return "1 job"
	}
	return fmt.Sprintf("%d jobs", n)
}

// ids lists the ids of rows.
func ids(rows []*millracetype.JobRow) string {
	s := make([]string, len(rows))
	for i, r := range rows {
		s[i] = fmt.Sprint(r.ID)
	}
	return strings.Join(s, ", ")
}
