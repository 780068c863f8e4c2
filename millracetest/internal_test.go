package millracetest

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/millrace/millrace/driver/pgxv5"
)

type kindArgs struct{}

func (kindArgs) Kind() string { return "k" }

// TestNilTB checks that a nil testing.TB stops the goroutine (so the
// test cannot go on as if the assertion had passed) after saying why on
// standard error, for every entry point.
func TestNilTB(t *testing.T) {
	var out bytes.Buffer
	old := nilTBOutput
	nilTBOutput = &out
	defer func() { nilTBOutput = old }()

	ctx := context.Background()
	drv := pgxv5.New(nil)
	for name, fn := range map[string]func(){
		"RequireInserted":       func() { RequireInserted(ctx, nil, drv, kindArgs{}, nil) },
		"RequireInsertedTx":     func() { RequireInsertedTx(ctx, nil, drv, nil, kindArgs{}, nil) },
		"RequireNotInserted":    func() { RequireNotInserted(ctx, nil, drv, kindArgs{}, nil) },
		"RequireNotInsertedTx":  func() { RequireNotInsertedTx(ctx, nil, drv, nil, kindArgs{}, nil) },
		"RequireManyInserted":   func() { RequireManyInserted(ctx, nil, drv, []ExpectedJob{{Args: kindArgs{}}}, nil) },
		"RequireManyInsertedTx": func() { RequireManyInsertedTx(ctx, nil, drv, nil, []ExpectedJob{{Args: kindArgs{}}}, nil) },
	} {
		out.Reset()
		returned := make(chan bool)
		go func() {
			ok := false
			defer func() { returned <- ok }()
			fn()
			ok = true
		}()
		if <-returned {
			t.Errorf("%s with a nil TB returned, want the goroutine stopped", name)
		}
		want := "millracetest: " + name + ": the testing.TB is nil, so no failure can be reported; stopping the goroutine\n"
		if out.String() != want {
			t.Errorf("%s wrote %q, want %q", name, out.String(), want)
		}
	}
}

// TestJSONContains checks the containment rules against what PostgreSQL's
// jsonb @> answers for the same pairs.
func TestJSONContains(t *testing.T) {
	t.Parallel()
	tests := []struct {
		got, want string
		contains  bool
	}{
		{`{"a": 1, "b": 2}`, `{"a": 1}`, true},
		{`{"a": 1}`, `{"a": 1, "b": 2}`, false},
		{`{"a": 1}`, `{"a": 1.0}`, true},
		{`{"a": 1}`, `{"a": 10e-1}`, true},
		{`{"a": 1}`, `{"a": "1"}`, false},
		{`{"a": {"b": {"c": true, "d": null}}}`, `{"a": {"b": {"d": null}}}`, true},
		{`{"a": {"b": 1}}`, `{"b": 1}`, false},
		{`{"a": [1, 2, 3]}`, `{"a": [3, 1]}`, true},
		{`{"a": [1, 2, 3]}`, `{"a": [1, 1]}`, true},
		{`{"a": [1, 2, 3]}`, `{"a": [4]}`, false},
		{`{"a": [1, 2, [1, 3]]}`, `{"a": [[1, 3]]}`, true},
		{`{"a": [1, 2, [1, 3]]}`, `{"a": [[3]]}`, true},
		{`{"a": [1, 2, [1, 3]]}`, `{"a": [1, 3]}`, false},
		{`{"a": [{"x": 1, "y": 2}]}`, `{"a": [{"x": 1}]}`, true},
		{`{"a": []}`, `{"a": []}`, true},
		{`{"a": [1]}`, `{"a": []}`, true},
		{`{"a": {}}`, `{"a": []}`, false},
		{`{"a": false}`, `{"a": null}`, false},
		{`{}`, `{}`, true},
	}
	for _, tt := range tests {
		got, err := decodeJSON([]byte(tt.got))
		if err != nil {
			t.Fatal(err)
		}
		want, err := decodeJSON([]byte(tt.want))
		if err != nil {
			t.Fatal(err)
		}
		if c := jsonContains(got, want); c != tt.contains {
			t.Errorf("%s @> %s = %v, want %v", tt.got, tt.want, c, tt.contains)
		}
	}
}

// TestDecodeJSONRejectsTrailingData checks that two values are not taken
// for one.
func TestDecodeJSONRejectsTrailingData(t *testing.T) {
	t.Parallel()
	if _, err := decodeJSON([]byte(`{"a": 1} {}`)); err == nil || !strings.Contains(err.Error(), "trailing data") {
		t.Fatalf("decodeJSON of two values: err = %v, want trailing data", err)
	}
}

// TestCompactCutsOnARune checks that long JSON is cut for messages
// without splitting a character.
func TestCompactCutsOnARune(t *testing.T) {
	t.Parallel()
	// The compacted prefix {"ss":" has 7 bytes, so byte 300 falls inside a
	// two-byte é.
	long := []byte(`{"ss": "` + strings.Repeat("é", 400) + `"}`)
	got := compact(long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || len(got) > 300+len("…") {
		t.Fatalf("compact of long JSON gave %q", got)
	}
	if got := compact([]byte(`{"a": 1}`)); got != `{"a":1}` {
		t.Fatalf("compact gave %q", got)
	}
}

// TestOverlapping: the check for a job run in two places at once finds
// overlapping calls, and only those.
func TestOverlapping(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond) }
	calls := []call{
		{JobID: 1, Start: at(0), End: at(10)}, {JobID: 1, Start: at(10), End: at(20)}, // back to back
		{JobID: 2, Start: at(0), End: at(50)}, {JobID: 2, Start: at(20), End: at(30)}, // inside
		{JobID: 3, Start: at(40), End: at(60)}, {JobID: 3, Start: at(0), End: at(100)}, // unsorted
		{JobID: 4, Start: at(0), End: at(100)}, {JobID: 4, Start: at(10), End: at(20)}, {JobID: 4, Start: at(50), End: at(60)},
		{JobID: 5, Start: at(0), End: at(10)}, {JobID: 5, Start: at(30), End: at(40)}, {JobID: 5, Start: at(11), End: at(29)},
		{JobID: 6, Start: at(0), End: at(10)},
	}
	if got := overlapping(calls); !slices.Equal(got, []int64{2, 3, 4}) {
		t.Errorf("overlapping = %v, want [2 3 4]", got)
	}
}
