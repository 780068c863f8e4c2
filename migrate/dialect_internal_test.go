package migrate

import (
	"errors"
	"io/fs"
	"testing"
	"testing/fstest"
)

type fsProvider struct{ fsys fs.FS }

func (p fsProvider) MigrationFS() fs.FS { return p.fsys }

// A driver's own line must have the Postgres line's versions, by number
// and name; anything else is refused with ErrDialectLine.
func TestDialectLine(t *testing.T) {
	spec, _ := specFor(LineMillrace)
	pg, err := loadLine(embedded, spec)
	if err != nil {
		t.Fatal(err)
	}
	// A copy of the Postgres files is a valid dialect line.
	good := fstest.MapFS{}
	entries, _ := fs.ReadDir(embedded, spec.dir)
	for _, e := range entries {
		b, _ := fs.ReadFile(embedded, spec.dir+"/"+e.Name())
		good[spec.dir+"/"+e.Name()] = &fstest.MapFile{Data: b}
	}
	got, err := dialectLine(fsProvider{good}, spec, pg)
	if err != nil || len(got) != len(pg) {
		t.Fatalf("dialectLine of a copy: %d versions, %v", len(got), err)
	}

	short := fstest.MapFS{}
	for name, f := range good {
		if name != spec.dir+"/006_millrace_rate.up.sql" && name != spec.dir+"/006_millrace_rate.down.sql" {
			short[name] = f
		}
	}
	renamed := fstest.MapFS{}
	for name, f := range short {
		renamed[name] = f
	}
	renamed[spec.dir+"/006_other.up.sql"] = &fstest.MapFile{Data: []byte("-- nothing")}
	renamed[spec.dir+"/006_other.down.sql"] = &fstest.MapFile{Data: []byte("-- nothing")}
	for name, fsys := range map[string]fs.FS{"nil": nil, "empty": fstest.MapFS{}, "one version short": short, "renamed version": renamed} {
		if _, err := dialectLine(fsProvider{fsys}, spec, pg); !errors.Is(err, ErrDialectLine) {
			t.Errorf("%s: got %v, want ErrDialectLine", name, err)
		}
	}
}
