package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/driver/pgxv5"
	"github.com/millrace/millrace/internal/jobexec"
	"github.com/millrace/millrace/millracetype"
)

// funcUnit is a decoded job whose work is a function.
type funcUnit func(ctx context.Context) error

func (f funcUnit) Work(ctx context.Context) error { return f(ctx) }
func (funcUnit) Timeout() time.Duration           { return 0 }
func (funcUnit) NextRetry() time.Time             { return time.Time{} }

// attemptResult is what one attempt of a resumable job did.
type attemptResult struct {
	err error
	// metadata is the job's metadata once the attempt's updates are merged
	// (top-level, as the completer merges them).
	metadata map[string]any
	// updates are the attempt's own metadata updates (nil when none).
	updates map[string]any
}

// attemptResumable runs work as one attempt of a running job with the
// given metadata, through the client's own run path (saved progress read
// before, middleware, panic recovery, progress saved after), without a
// database.
func attemptResumable(t *testing.T, metadata string, work func(ctx context.Context) error) attemptResult {
	t.Helper()
	c, err := New(pgxv5.New(nil), &Config{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	row := &millracetype.JobRow{ID: 1, Attempt: 1, MaxAttempts: 5, State: millracetype.JobStateRunning, Metadata: []byte(metadata)}
	ctx := jobexec.NewJobContext(context.Background(), c)
	panicVal, _, err := c.exec.RunJob(ctx, row, funcUnit(work))
	if panicVal != nil {
		err = fmt.Errorf("panic: %v", panicVal)
	}
	res := attemptResult{err: err, metadata: map[string]any{}}
	_ = json.Unmarshal([]byte(metadata), &res.metadata)
	if b := jobexec.MetadataUpdates(ctx); b != nil {
		if err := json.Unmarshal(b, &res.updates); err != nil {
			t.Fatalf("updates %s: %v", b, err)
		}
		maps.Copy(res.metadata, res.updates)
	}
	return res
}

// next encodes the merged metadata for the following attempt.
func (r attemptResult) next(t *testing.T) string {
	t.Helper()
	b, err := json.Marshal(r.metadata)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func requireUpdates(t *testing.T, got map[string]any, want string) {
	t.Helper()
	var w map[string]any
	if want != "" {
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) == 0 && len(w) == 0 {
		return
	}
	if !reflect.DeepEqual(got, w) {
		gb, _ := json.Marshal(got)
		t.Fatalf("metadata updates %s, want %s", gb, want)
	}
}

type testCursor struct {
	ID int `json:"id"`
}

func TestResumableSteps(t *testing.T) {
	t.Parallel()

	t.Run("ResumesAfterLastCompletedStep", func(t *testing.T) {
		t.Parallel()
		var ran []string
		work := func(failAt string) func(ctx context.Context) error {
			return func(ctx context.Context) error {
				for _, name := range []string{"s1", "s2", "s3"} {
					if err := ResumableStep(ctx, name, func(ctx context.Context) error {
						ran = append(ran, name)
						if name == failAt {
							return errors.New(name + " failed")
						}
						return nil
					}); err != nil {
						return err
					}
				}
				return nil
			}
		}
		res := attemptResumable(t, `{}`, work("s2"))
		if res.err == nil || res.err.Error() != "s2 failed" {
			t.Fatalf("error %v", res.err)
		}
		requireUpdates(t, res.updates, `{"river:resumable_step":"s1"}`)
		if !slices.Equal(ran, []string{"s1", "s2"}) {
			t.Fatalf("ran %v", ran)
		}
		ran = nil
		res = attemptResumable(t, res.next(t), work(""))
		if res.err != nil {
			t.Fatal(res.err)
		}
		if !slices.Equal(ran, []string{"s2", "s3"}) {
			t.Fatalf("retry ran %v, want s2 s3", ran)
		}
		requireUpdates(t, res.updates, "") // success saves nothing
	})

	t.Run("StepErrorFailsJobEvenIfWorkReturnsNil", func(t *testing.T) {
		t.Parallel()
		var ran []string
		res := attemptResumable(t, `{}`, func(ctx context.Context) error {
			_ = ResumableStep(ctx, "a", func(context.Context) error { ran = append(ran, "a"); return errors.New("a broke") })
			err := ResumableStep(ctx, "b", func(context.Context) error { ran = append(ran, "b"); return nil })
			if err == nil || err.Error() != "a broke" {
				t.Errorf("later step returned %v, want the first failure", err)
			}
			return nil
		})
		if res.err == nil || res.err.Error() != "a broke" || !slices.Equal(ran, []string{"a"}) {
			t.Fatalf("error %v, ran %v", res.err, ran)
		}
		requireUpdates(t, res.updates, "")
	})

	t.Run("SavesProgressOnCancellation", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{}`, func(ctx context.Context) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			_ = ResumableStep(ctx, "s1", func(context.Context) error { cancel(); return nil })
			return ResumableStep(ctx, "s2", func(ctx context.Context) error { return ctx.Err() })
		})
		if !errors.Is(res.err, context.Canceled) {
			t.Fatalf("error %v", res.err)
		}
		requireUpdates(t, res.updates, `{"river:resumable_step":"s1"}`)
	})

	t.Run("SavesProgressOnPanic", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{}`, func(ctx context.Context) error {
			_ = ResumableStep(ctx, "s1", func(context.Context) error { return nil })
			_ = ResumableStepCursor(ctx, "loop", func(ctx context.Context, c int) error {
				if err := ResumableSetCursor(ctx, 3); err != nil {
					return err
				}
				panic("boom")
			})
			return nil
		})
		if res.err == nil || res.err.Error() != "panic: boom" {
			t.Fatalf("error %v", res.err)
		}
		requireUpdates(t, res.updates, `{"river:resumable_step":"s1","river:resumable_cursor":{"loop":3}}`)
	})

	t.Run("CursorStep", func(t *testing.T) {
		t.Parallel()
		var seen []testCursor
		var ran []int
		work := func(failStep2 bool) func(ctx context.Context) error {
			return func(ctx context.Context) error {
				_ = ResumableStep(ctx, "step1", func(context.Context) error { ran = append(ran, 1); return nil })
				_ = ResumableStepCursor(ctx, "step2", func(ctx context.Context, cur testCursor) error {
					ran = append(ran, 2)
					seen = append(seen, cur)
					if failStep2 {
						if err := ResumableSetCursor(ctx, testCursor{ID: 42}); err != nil {
							return err
						}
						return errors.New("step2 failed")
					}
					return nil
				})
				return ResumableStep(ctx, "step3", func(context.Context) error { ran = append(ran, 3); return nil })
			}
		}
		res := attemptResumable(t, `{}`, work(true))
		if res.err == nil || res.err.Error() != "step2 failed" {
			t.Fatalf("error %v", res.err)
		}
		requireUpdates(t, res.updates, `{"river:resumable_step":"step1","river:resumable_cursor":{"step2":{"id":42}}}`)
		ran = nil
		res = attemptResumable(t, res.next(t), work(false))
		if res.err != nil {
			t.Fatal(res.err)
		}
		if !slices.Equal(ran, []int{2, 3}) || !slices.Equal(seen, []testCursor{{}, {ID: 42}}) {
			t.Fatalf("retry ran %v with cursors %v", ran, seen)
		}
		requireUpdates(t, res.updates, "")
	})

	t.Run("CompletedCursorStepClearsItsCursor", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{"river:resumable_cursor":{"step2":{"id":42}},"river:resumable_step":"step1"}`,
			func(ctx context.Context) error {
				_ = ResumableStep(ctx, "step1", func(context.Context) error { t.Error("step1 ran again"); return nil })
				_ = ResumableStepCursor(ctx, "step2", func(ctx context.Context, c testCursor) error { return nil })
				return ResumableStep(ctx, "step3", func(context.Context) error { return errors.New("step3 failed") })
			})
		if res.err == nil || res.err.Error() != "step3 failed" {
			t.Fatalf("error %v", res.err)
		}
		requireUpdates(t, res.updates, `{"river:resumable_step":"step2","river:resumable_cursor":null}`)
	})

	t.Run("CursorOnlyProgressRunsFromTheStart", func(t *testing.T) {
		t.Parallel()
		var ran []string
		work := func(ctx context.Context) error {
			_ = ResumableStep(ctx, "prepare", func(context.Context) error { ran = append(ran, "prepare"); return nil })
			return ResumableStepCursor(ctx, "loop", func(ctx context.Context, n int) error {
				ran = append(ran, fmt.Sprint("loop from ", n))
				if n == 0 {
					_ = ResumableSetCursor(ctx, 7)
					return errors.New("retry")
				}
				return nil
			})
		}
		// The cursor step is the first: only its cursor is saved.
		res := attemptResumable(t, `{}`, func(ctx context.Context) error {
			return ResumableStepCursor(ctx, "loop", func(ctx context.Context, n int) error {
				_ = ResumableSetCursor(ctx, 7)
				return JobSnooze(time.Minute)
			})
		})
		requireUpdates(t, res.updates, `{"river:resumable_cursor":{"loop":7}}`)
		res = attemptResumable(t, res.next(t), work)
		if res.err != nil {
			t.Fatal(res.err)
		}
		if !slices.Equal(ran, []string{"prepare", "loop from 7"}) {
			t.Fatalf("ran %v", ran)
		}
	})

	t.Run("MultipleCursorTypes", func(t *testing.T) {
		t.Parallel()
		type second struct {
			ID string `json:"id"`
		}
		res := attemptResumable(t, `{"river:resumable_cursor":{"step1":123,"step2":{"id":"abc"}},"river:resumable_step":"step1"}`,
			func(ctx context.Context) error {
				var got1 int
				var got2 second
				_ = ResumableStepCursor(ctx, "step1", func(ctx context.Context, c int) error { got1 = c; return nil })
				_ = ResumableStepCursor(ctx, "step2", func(ctx context.Context, c second) error { got2 = c; return nil })
				if got1 != 123 || got2.ID != "abc" {
					t.Errorf("cursors %v %v", got1, got2)
				}
				return nil
			})
		if res.err != nil {
			t.Fatal(res.err)
		}
	})

	t.Run("DuplicateStepName", func(t *testing.T) {
		t.Parallel()
		var ran []string
		res := attemptResumable(t, `{}`, func(ctx context.Context) error {
			_ = ResumableStep(ctx, "x", func(context.Context) error { ran = append(ran, "first"); return nil })
			err := ResumableStepCursor(ctx, "x", func(context.Context, int) error { ran = append(ran, "second"); return nil })
			if !errors.Is(err, ErrResumableDuplicateStep) {
				t.Errorf("duplicate returned %v", err)
			}
			return nil
		})
		if !errors.Is(res.err, ErrResumableDuplicateStep) || !slices.Equal(ran, []string{"first"}) {
			t.Fatalf("error %v, ran %v", res.err, ran)
		}
		// The progress made before the misuse is kept.
		requireUpdates(t, res.updates, `{"river:resumable_step":"x"}`)
	})

	t.Run("DuplicateStepNameWhileSkipping", func(t *testing.T) {
		t.Parallel()
		var ran []string
		res := attemptResumable(t, `{"river:resumable_step":"s2"}`, func(ctx context.Context) error {
			for _, name := range []string{"s1", "s1", "s2"} {
				_ = ResumableStep(ctx, name, func(context.Context) error { ran = append(ran, name); return nil })
			}
			return nil
		})
		if !errors.Is(res.err, ErrResumableDuplicateStep) || len(ran) != 0 {
			t.Fatalf("error %v, ran %v", res.err, ran)
		}
	})

	for _, tc := range []struct {
		name                 string
		parentCursor, cursor bool
	}{{"PlainInPlain", false, false}, {"CursorInPlain", false, true}, {"PlainInCursor", true, false}, {"CursorInCursor", true, true}} {
		t.Run("Nested"+tc.name, func(t *testing.T) {
			t.Parallel()
			res := attemptResumable(t, `{}`, func(ctx context.Context) error {
				_ = ResumableStep(ctx, "before", func(context.Context) error { return nil })
				child := func(ctx context.Context) {
					var err error
					if tc.cursor {
						err = ResumableStepCursor(ctx, "child", func(context.Context, int) error { t.Error("nested step ran"); return nil })
					} else {
						err = ResumableStep(ctx, "child", func(context.Context) error { t.Error("nested step ran"); return nil })
					}
					if !errors.Is(err, ErrResumableNested) {
						t.Errorf("nested step returned %v", err)
					}
				}
				if tc.parentCursor {
					_ = ResumableStepCursor(ctx, "parent", func(ctx context.Context, _ int) error {
						if err := ResumableSetCursor(ctx, 1); err != nil {
							t.Error(err)
						}
						child(ctx)
						return nil
					})
				} else {
					_ = ResumableStep(ctx, "parent", func(ctx context.Context) error { child(ctx); return nil })
				}
				return ResumableStep(ctx, "after", func(context.Context) error { t.Error("step after the misuse ran"); return nil })
			})
			if !errors.Is(res.err, ErrResumableNested) {
				t.Fatalf("error %v", res.err)
			}
			want := `{"river:resumable_step":"before"}`
			if tc.parentCursor {
				want = `{"river:resumable_step":"before","river:resumable_cursor":{"parent":1}}`
			}
			requireUpdates(t, res.updates, want)
		})
	}

	t.Run("SavedStepNotInWorker", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{"river:resumable_step":"gone"}`, func(ctx context.Context) error {
			return ResumableStep(ctx, "other", func(context.Context) error { t.Error("ran a step before the saved one"); return nil })
		})
		if !errors.Is(res.err, ErrResumableStepNotFound) || !strings.Contains(res.err.Error(), `"gone"`) {
			t.Fatalf("error %v", res.err)
		}
		// Nothing saved, so a fixed worker can still resume.
		requireUpdates(t, res.updates, "")
	})

	t.Run("SavedCursorNotInWorker", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{"river:resumable_cursor":{"loop":0}}`, func(ctx context.Context) error {
			return ResumableStep(ctx, "later", func(context.Context) error { return nil })
		})
		if !errors.Is(res.err, ErrResumableStepNotFound) || !strings.Contains(res.err.Error(), `"loop"`) {
			t.Fatalf("error %v", res.err)
		}
		requireUpdates(t, res.updates, "")
	})

	t.Run("PlainStepWithSavedCursor", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{"river:resumable_cursor":{"loop":5}}`, func(ctx context.Context) error {
			return ResumableStep(ctx, "loop", func(context.Context) error { t.Error("ran"); return nil })
		})
		if !errors.Is(res.err, ErrResumableStepMismatch) {
			t.Fatalf("error %v", res.err)
		}
	})

	t.Run("CursorOfAnotherType", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{"river:resumable_cursor":{"loop":"abc"}}`, func(ctx context.Context) error {
			return ResumableStepCursor(ctx, "loop", func(context.Context, int) error { t.Error("ran"); return nil })
		})
		if !errors.Is(res.err, ErrResumableStepMismatch) || !strings.Contains(res.err.Error(), "into int") {
			t.Fatalf("error %v", res.err)
		}
		requireUpdates(t, res.updates, "")
	})

	t.Run("MalformedSavedCursors", func(t *testing.T) {
		t.Parallel()
		ran := false
		res := attemptResumable(t, `{"river:resumable_cursor":[1,2]}`, func(ctx context.Context) error { ran = true; return nil })
		if !errors.Is(res.err, ErrResumableStepMismatch) || ran {
			t.Fatalf("error %v, worker ran %v", res.err, ran)
		}
	})

	t.Run("IgnoredSavedValues", func(t *testing.T) {
		t.Parallel()
		// What River ignores is ignored: a step that is not a string,
		// cursors that are null, metadata that is not an object.
		for _, metadata := range []string{`{"river:resumable_step":5,"river:resumable_cursor":null}`, `[1]`, `"resumable_"`} {
			var ran []string
			res := attemptResumable(t, metadata, func(ctx context.Context) error {
				_ = ResumableStep(ctx, "a", func(context.Context) error { ran = append(ran, "a"); return nil })
				return ResumableStepCursor(ctx, "b", func(_ context.Context, c int) error { ran = append(ran, fmt.Sprint("b", c)); return nil })
			})
			if res.err != nil || !slices.Equal(ran, []string{"a", "b0"}) {
				t.Fatalf("metadata %s: error %v, ran %v", metadata, res.err, ran)
			}
		}
	})

	t.Run("SetCursorOutsideCursorStep", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{}`, func(ctx context.Context) error {
			if err := ResumableSetCursor(ctx, 1); !errors.Is(err, ErrResumableNotInStep) {
				t.Errorf("outside a step: %v", err)
			}
			_ = ResumableStep(ctx, "plain", func(ctx context.Context) error {
				if err := ResumableSetCursor(ctx, 1); !errors.Is(err, ErrResumableNotInStep) {
					t.Errorf("in a plain step: %v", err)
				}
				return nil
			})
			return ResumableStepCursor(ctx, "cur", func(ctx context.Context, _ int) error {
				if err := ResumableSetCursor(ctx, make(chan int)); err == nil {
					t.Error("an unencodable cursor was accepted")
				}
				return nil
			})
		})
		if res.err != nil {
			t.Fatal(res.err)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		t.Parallel()
		res := attemptResumable(t, `{}`, func(ctx context.Context) error {
			return ResumableStep(ctx, "", func(context.Context) error { return nil })
		})
		if !errors.Is(res.err, ErrInvalidArgs) {
			t.Errorf("empty name: %v", res.err)
		}
		res = attemptResumable(t, `{}`, func(ctx context.Context) error {
			_ = ResumableStepCursor[int](ctx, "x", nil)
			return nil
		})
		if !errors.Is(res.err, ErrInvalidArgs) {
			t.Errorf("nil function: %v", res.err)
		}
	})

	t.Run("OutsideWorker", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		ran := false
		if err := ResumableStep(ctx, "a", func(context.Context) error { ran = true; return nil }); !errors.Is(err, ErrNotInWorker) {
			t.Errorf("ResumableStep: %v", err)
		}
		if err := ResumableStepCursor(ctx, "a", func(context.Context, int) error { ran = true; return nil }); !errors.Is(err, ErrNotInWorker) {
			t.Errorf("ResumableStepCursor: %v", err)
		}
		if err := ResumableSetCursor(ctx, 1); !errors.Is(err, ErrNotInWorker) {
			t.Errorf("ResumableSetCursor: %v", err)
		}
		job := &Job[noopArgs]{JobRow: &millracetype.JobRow{ID: 1, State: millracetype.JobStateRunning}}
		var tx pgx.Tx = fakeTx{}
		if _, err := ResumableSetStepTx(ctx, tx, job); !errors.Is(err, ErrNotInWorker) {
			t.Errorf("ResumableSetStepTx: %v", err)
		}
		if _, err := ResumableSetStepCursorTx(ctx, tx, job, 1); !errors.Is(err, ErrNotInWorker) {
			t.Errorf("ResumableSetStepCursorTx: %v", err)
		}
		if ran {
			t.Error("a step ran outside a worker")
		}
	})

	t.Run("AfterRunEnded", func(t *testing.T) {
		t.Parallel()
		var kept context.Context
		res := attemptResumable(t, `{}`, func(ctx context.Context) error { kept = ctx; return nil })
		if res.err != nil {
			t.Fatal(res.err)
		}
		if err := ResumableStep(kept, "late", func(context.Context) error { t.Error("ran"); return nil }); !errors.Is(err, ErrNotInWorker) {
			t.Errorf("ResumableStep after the run: %v", err)
		}
		if err := MetadataSet(kept, "late", 1); !errors.Is(err, ErrNotInWorker) {
			t.Errorf("MetadataSet after the run: %v", err)
		}
	})
}

// fakeTx is a non-nil pgx.Tx for calls that must fail before using it.
type fakeTx struct{ pgx.Tx }
