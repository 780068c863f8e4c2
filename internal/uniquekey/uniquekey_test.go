package uniquekey

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/millracetype"
)

// testNow is a Wednesday.
var testNow = time.Date(2026, time.November, 25, 13, 14, 15, 987654321, time.UTC)

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return b
}

func TestPreImageSpecExample(t *testing.T) {
	t.Parallel()

	args := sleepArgs{ZZ: "q", A: 5}
	opts := &Opts{ByArgs: true, ByQueue: true}
	const want = `&kind=sleep&args={"a":5,"zz":"q"}&queue=default`

	got, err := PreImage(opts, "sleep", mustMarshal(t, args), args, "default", nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("pre-image:\n got %s\nwant %s", got, want)
	}

	key, err := Key(opts, "sleep", mustMarshal(t, args), args, "default", nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	// Pinned: sha256 of the pre-image above, computed independently.
	const wantHex = "bea8582cb10841e199c659dc5ece5f4f7f30d90916cd764ca7c25c721e69c9a9"
	if hex.EncodeToString(key) != wantHex {
		t.Fatalf("key = %x, want %s", key, wantHex)
	}
}

func TestPreImageParts(t *testing.T) {
	t.Parallel()

	args := sleepArgs{ZZ: "q", A: 5}
	sched := time.Date(2026, time.December, 31, 23, 59, 59, 0, time.UTC)
	tests := []struct {
		name  string
		opts  Opts
		sched *time.Time
		want  string
	}{
		{name: "OnlyByArgs", opts: Opts{ByArgs: true}, want: `&kind=sleep&args={"a":5,"zz":"q"}`},
		{name: "OnlyByQueue", opts: Opts{ByQueue: true}, want: `&kind=sleep&queue=default`},
		{name: "OnlyByPeriod", opts: Opts{ByPeriod: time.Hour}, want: `&kind=sleep&period=2026-11-25T13:00:00Z`},
		{name: "OnlyByState", opts: Opts{ByState: []millracetype.JobState{
			millracetype.JobStateAvailable, millracetype.JobStatePending, millracetype.JobStateRunning, millracetype.JobStateScheduled,
		}}, want: `&kind=sleep`},
		{name: "ByStateNonNilEmpty", opts: Opts{ByState: []millracetype.JobState{}}, want: `&kind=sleep`},
		{name: "AllInOrder", opts: Opts{ByArgs: true, ByPeriod: time.Hour, ByQueue: true},
			want: `&kind=sleep&args={"a":5,"zz":"q"}&period=2026-11-25T13:00:00Z&queue=default`},
		{name: "PeriodFromScheduledAt", opts: Opts{ByPeriod: 24 * time.Hour}, sched: &sched,
			want: `&kind=sleep&period=2026-12-31T00:00:00Z`},
		{name: "ExcludeKindByArgs", opts: Opts{ByArgs: true, ExcludeKind: true}, want: `&args={"a":5,"zz":"q"}`},
		{name: "ExcludeKindByQueue", opts: Opts{ByQueue: true, ExcludeKind: true}, want: `&queue=default`},
		{name: "ExcludeKindByPeriod", opts: Opts{ByPeriod: time.Minute, ExcludeKind: true}, want: `&period=2026-11-25T13:14:00Z`},
		{name: "ExcludeKindAll", opts: Opts{ByArgs: true, ByPeriod: time.Minute, ByQueue: true, ExcludeKind: true},
			want: `&args={"a":5,"zz":"q"}&period=2026-11-25T13:14:00Z&queue=default`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, err := PreImage(&tt.opts, "sleep", mustMarshal(t, args), args, "default", tt.sched, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("pre-image:\n got %s\nwant %s", got, tt.want)
			}

			key, err := Key(&tt.opts, "sleep", mustMarshal(t, args), args, "default", tt.sched, testNow)
			if err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256([]byte(tt.want))
			if string(key) != string(want[:]) || len(key) != 32 {
				t.Fatalf("key = %x, want sha256 of pre-image %x", key, want)
			}
		})
	}
}

func TestEmptyOptsHaveNoKey(t *testing.T) {
	t.Parallel()

	for _, opts := range []*Opts{nil, {}} {
		key, err := Key(opts, "k", []byte(`not json`), nil, "q", nil, testNow)
		if key != nil || err != nil {
			t.Fatalf("Key(%+v) = %x, %v; want nil, nil", opts, key, err)
		}
		pre, err := PreImage(opts, "k", nil, nil, "q", nil, testNow)
		if pre != "" || err != nil {
			t.Fatalf("PreImage(%+v) = %q, %v; want empty", opts, pre, err)
		}
	}
}

func TestArgsOnlyReadWithByArgs(t *testing.T) {
	t.Parallel()

	pre, err := PreImage(&Opts{ByQueue: true}, "k", []byte(`{{{ not json`), nil, "q", nil, testNow)
	if err != nil || pre != "&kind=k&queue=q" {
		t.Fatalf("got %q, %v", pre, err)
	}
	_, err = PreImage(&Opts{ByArgs: true}, "k", []byte(`{{{ not json`), nil, "q", nil, testNow)
	if !errors.Is(err, ErrInvalidJSON) {
		t.Fatalf("err = %v, want ErrInvalidJSON", err)
	}
}

func TestKeyReportsInvalidOpts(t *testing.T) {
	t.Parallel()

	_, err := Key(&Opts{ByPeriod: time.Millisecond}, "k", nil, nil, "q", nil, testNow)
	if !errors.Is(err, ErrPeriodTooShort) {
		t.Fatalf("Key err = %v, want ErrPeriodTooShort", err)
	}
	_, err = PreImage(&Opts{ExcludeKind: true}, "k", nil, nil, "q", nil, testNow)
	if !errors.Is(err, ErrExcludeKindAlone) {
		t.Fatalf("PreImage err = %v, want ErrExcludeKindAlone", err)
	}
}

func TestIsEmpty(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		opts *Opts
		want bool
	}{
		{name: "Nil", opts: nil, want: true},
		{name: "Zero", opts: &Opts{}, want: true},
		{name: "ByArgs", opts: &Opts{ByArgs: true}, want: false},
		{name: "ByPeriod", opts: &Opts{ByPeriod: time.Hour}, want: false},
		{name: "ByQueue", opts: &Opts{ByQueue: true}, want: false},
		{name: "ByState", opts: &Opts{ByState: []millracetype.JobState{millracetype.JobStateAvailable}}, want: false},
		{name: "ByStateNonNilEmpty", opts: &Opts{ByState: []millracetype.JobState{}}, want: false},
		{name: "ExcludeKindAlone", opts: &Opts{ExcludeKind: true}, want: false},
	}
	for _, tt := range tests {
		if got := tt.opts.IsEmpty(); got != tt.want {
			t.Errorf("%s: IsEmpty() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()

	const (
		av = millracetype.JobStateAvailable
		ca = millracetype.JobStateCancelled
		co = millracetype.JobStateCompleted
		di = millracetype.JobStateDiscarded
		pe = millracetype.JobStatePending
		re = millracetype.JobStateRetryable
		ru = millracetype.JobStateRunning
		sc = millracetype.JobStateScheduled
	)
	type states = []millracetype.JobState
	tests := []struct {
		name    string
		opts    *Opts
		wantErr error
		wantMsg string // substring of the message, when set
	}{
		{name: "Nil", opts: nil},
		{name: "Empty", opts: &Opts{}},
		{name: "PeriodOneSecond", opts: &Opts{ByPeriod: time.Second}},
		{name: "PeriodJustUnderOneSecond", opts: &Opts{ByPeriod: time.Second - 1}, wantErr: ErrPeriodTooShort, wantMsg: "999.999999ms"},
		{name: "PeriodNegative", opts: &Opts{ByPeriod: -time.Hour}, wantErr: ErrPeriodTooShort},
		{name: "PeriodCheckedFirst", opts: &Opts{ByPeriod: 1, ExcludeKind: true, ByState: states{"nope"}}, wantErr: ErrPeriodTooShort},
		{name: "ExcludeKindAlone", opts: &Opts{ExcludeKind: true}, wantErr: ErrExcludeKindAlone},
		{name: "ExcludeKindWithOnlyByState", opts: &Opts{ExcludeKind: true, ByState: states{av, pe, ru, sc}}, wantErr: ErrExcludeKindAlone},
		{name: "ExcludeKindWithByArgs", opts: &Opts{ExcludeKind: true, ByArgs: true}},
		{name: "ExcludeKindWithByQueue", opts: &Opts{ExcludeKind: true, ByQueue: true}},
		{name: "ExcludeKindWithByPeriod", opts: &Opts{ExcludeKind: true, ByPeriod: time.Hour}},
		{name: "UnknownState", opts: &Opts{ByArgs: true, ByState: states{av, pe, ru, sc, "bogus"}}, wantErr: ErrUnknownState, wantMsg: `"bogus"`},
		{name: "UnknownStateCheckedBeforeRequired", opts: &Opts{ByState: states{"Available"}}, wantErr: ErrUnknownState},
		{name: "MissingScheduled", opts: &Opts{ByState: states{av, pe, ru}}, wantErr: ErrMissingRequiredState, wantMsg: "missing scheduled"},
		{name: "MissingSeveral", opts: &Opts{ByState: states{co, re}}, wantErr: ErrMissingRequiredState, wantMsg: "missing available, pending, running, scheduled"},
		{name: "RequiredOnly", opts: &Opts{ByState: states{sc, ru, pe, av}}},
		{name: "AllStates", opts: &Opts{ByState: millracetype.JobStates()}},
		{name: "DuplicatesAllowed", opts: &Opts{ByState: states{av, av, pe, ru, sc, ca, di}}},
		{name: "NonNilEmptyByStateMeansDefault", opts: &Opts{ByState: states{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			err := tt.opts.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Validate() = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestStatesMask(t *testing.T) {
	t.Parallel()

	wantDefault := byte(0b11110101) // bit(8) '11110101' read from the left
	if got := millracetype.UniqueStatesMask(DefaultStates()...); got != wantDefault || DefaultStatesMask != wantDefault {
		t.Fatalf("mask of DefaultStates = %#x, DefaultStatesMask = %#x, want 0xf5", got, DefaultStatesMask)
	}
	tests := []struct {
		name string
		opts *Opts
		want byte
	}{
		{name: "Nil", opts: nil, want: 0xF5},
		{name: "Default", opts: &Opts{ByArgs: true}, want: 0xF5},
		{name: "NonNilEmpty", opts: &Opts{ByState: []millracetype.JobState{}}, want: 0xF5},
		{name: "Required", opts: &Opts{ByState: RequiredStates()}, want: 0x01 | 0x10 | 0x40 | 0x80},
		{name: "All", opts: &Opts{ByState: millracetype.JobStates()}, want: 0xFF},
		{name: "RequiredPlusCancelled", opts: &Opts{ByState: append(RequiredStates(), millracetype.JobStateCancelled)}, want: 0xD3},
	}
	for _, tt := range tests {
		if got := tt.opts.StatesMask(); got != tt.want {
			t.Errorf("%s: StatesMask() = %#x, want %#x", tt.name, got, tt.want)
		}
	}
	// Every default state validates as a custom ByState too.
	if err := (&Opts{ByState: DefaultStates()}).Validate(); err != nil {
		t.Fatalf("DefaultStates as ByState: %v", err)
	}
}

func TestPeriodStart(t *testing.T) {
	t.Parallel()

	week := 7 * 24 * time.Hour
	minus5 := time.FixedZone("UTC-5", -5*60*60)
	plus1330 := time.FixedZone("UTC+13:30", 13*60*60+30*60)
	sched := time.Date(2027, time.January, 1, 2, 3, 4, 5, time.UTC)

	tests := []struct {
		name   string
		period time.Duration
		sched  *time.Time
		now    time.Time
		want   string
	}{
		{name: "Second", period: time.Second, now: testNow, want: "2026-11-25T13:14:15Z"},
		{name: "Minute", period: time.Minute, now: testNow, want: "2026-11-25T13:14:00Z"},
		{name: "FifteenMinutes", period: 15 * time.Minute, now: testNow, want: "2026-11-25T13:00:00Z"},
		{name: "Hour", period: time.Hour, now: testNow, want: "2026-11-25T13:00:00Z"},
		{name: "Day", period: 24 * time.Hour, now: testNow, want: "2026-11-25T00:00:00Z"},
		// Aligned to year 1: a Wednesday falls in the week that began on
		// Monday the 23rd (Unix-epoch alignment would give a Thursday).
		{name: "WeekStartsMonday", period: week, now: testNow, want: "2026-11-23T00:00:00Z"},
		{name: "WeekMondayMidnightIsItsOwnStart", period: week, now: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), want: "2026-11-23T00:00:00Z"},
		{name: "WeekSundayLastNanosecond", period: week, now: time.Date(2026, 11, 22, 23, 59, 59, 999999999, time.UTC), want: "2026-11-16T00:00:00Z"},
		{name: "ScheduledAtWins", period: time.Hour, sched: &sched, now: testNow, want: "2027-01-01T02:00:00Z"},
		{name: "NonUTCClockSameInstant", period: time.Hour, now: testNow.In(minus5), want: "2026-11-25T13:00:00Z"},
		{name: "NonUTCDayIsUTCDay", period: 24 * time.Hour, now: time.Date(2026, 11, 25, 20, 0, 0, 0, minus5), want: "2026-11-26T00:00:00Z"},
		{name: "HalfHourZone", period: time.Hour, now: time.Date(2026, 11, 25, 0, 10, 0, 0, plus1330), want: "2026-11-24T10:00:00Z"},
		// A period that is not a whole number of seconds can start on a
		// fraction, which RFC 3339 without fractions drops.
		{name: "FractionalPeriodDropsFraction", period: 1500 * time.Millisecond,
			now: time.Date(1, 1, 1, 0, 0, 5, 0, time.UTC), want: "0001-01-01T00:00:04Z"}, // starts at 4.5 s
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			start := PeriodStart(tt.period, tt.sched, tt.now)
			if got := start.Format(time.RFC3339); got != tt.want {
				t.Fatalf("PeriodStart = %s, want %s", got, tt.want)
			}
			if start.Location() != time.UTC {
				t.Fatalf("location = %v, want UTC", start.Location())
			}
			pre, err := PreImage(&Opts{ByPeriod: tt.period}, "k", nil, nil, "q", tt.sched, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if want := "&kind=k&period=" + tt.want; pre != want {
				t.Fatalf("pre-image = %s, want %s", pre, want)
			}
		})
	}
}

func TestWeekPeriodsAlwaysStartOnMonday(t *testing.T) {
	t.Parallel()

	week := 7 * 24 * time.Hour
	at := time.Date(1999, time.December, 25, 7, 0, 0, 0, time.UTC)
	for range 3000 {
		start := PeriodStart(week, nil, at)
		if start.Weekday() != time.Monday || start.Hour() != 0 || start.Minute() != 0 || start.Second() != 0 || start.Nanosecond() != 0 {
			t.Fatalf("week of %s starts %s (%s)", at, start, start.Weekday())
		}
		if at.Before(start) || !at.Before(start.Add(week)) {
			t.Fatalf("%s not within [%s, +7d)", at, start)
		}
		at = at.Add(61*time.Hour + 7*time.Minute + 13*time.Second)
	}
}
