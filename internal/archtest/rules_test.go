package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// loadGraph lists every package of the core module with all its
// dependencies, tests included.
func loadGraph(t *testing.T) []Package {
	t.Helper()
	out := goOutput(t, moduleRoot(t), nil, "list", "-deps", "-test", "-json=ImportPath,Imports,ForTest,Module", "./...")
	dec := json.NewDecoder(strings.NewReader(out))
	var graph []Package
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("parse go list output: %v", err)
		}
		graph = append(graph, p)
	}
	return graph
}

// TestImportRules fails when an import of the core module breaks one of
// Rules; the message shows the chain of imports that does.
func TestImportRules(t *testing.T) {
	t.Parallel()
	graph := loadGraph(t)

	// The listing must be the real graph, tests included, or the check
	// below proves nothing.
	paths := map[string]bool{}
	tests := 0
	for _, p := range graph {
		paths[p.ImportPath] = true
		if p.ForTest != "" {
			tests++
		}
	}
	for _, want := range []string{Module + "/client", Module + "/driver/pgxv5", Module + "/internal/producer", Module + "/millracetype", Module + "/startstop"} {
		if !paths[want] {
			t.Fatalf("go list did not list %s", want)
		}
	}
	if tests == 0 {
		t.Fatal("go list listed no test builds")
	}

	for _, v := range Check(Module, graph, Rules) {
		t.Errorf("%s", v)
	}
}

// pkg makes a package of module m importing imports.
func pkg(m, path string, imports ...string) Package {
	p := Package{ImportPath: path, Imports: imports}
	if m != "" {
		p.Module = &struct{ Path string }{m}
	}
	if i := strings.Index(path, " ["); i >= 0 {
		p.ForTest = strings.TrimSuffix(path[i+2:len(path)-1], ".test")
	}
	return p
}

// TestCheckCatchesBrokenGraphs feeds Check small graphs that each break one
// rule, and one that breaks none, so that TestImportRules passing means the
// rules hold rather than that Check sees nothing.
func TestCheckCatchesBrokenGraphs(t *testing.T) {
	t.Parallel()
	const (
		client   = Module + "/client"
		driver   = Module + "/driver"
		pgxv5    = Module + "/driver/pgxv5"
		producer = Module + "/internal/producer"
		retry    = Module + "/internal/retry"
		maint    = Module + "/maintenance"
		migrate  = Module + "/migrate"
		types    = Module + "/millracetype"
		ss       = Module + "/startstop"
		cmd      = Module + "/cmd/millrace"
		kit      = Module + "/millracetest"
		river    = "github.com/riverqueue/river"
	)
	m := Module
	// clean is a graph that keeps every rule: the usual arrows, plus test
	// builds that import client and migrate (tests may), and the users'
	// test kit millracetest, which imports client.
	clean := []Package{
		pkg(m, cmd, client, migrate, pgxv5),
		pkg(m, kit, client, driver, types),
		pkg(m, client, producer, maint, driver, types, ss),
		pkg(m, producer, driver, types, ss),
		pkg(m, maint, driver, retry, types, ss),
		pkg(m, retry),
		pkg(m, pgxv5, driver, types, "github.com/jackc/pgx/v5"),
		pkg(m, driver, types),
		pkg(m, migrate, driver),
		pkg(m, types, "time"),
		pkg(m, ss, "context"),
		pkg(m, producer+" ["+producer+".test]", driver, types, ss),
		pkg(m, producer+"_test ["+producer+".test]", producer+" ["+producer+".test]", client, migrate),
		pkg("", "github.com/jackc/pgx/v5", "context"),
		pkg("", "context"),
		pkg("", "time"),
		pkg(river, river, "context"),
	}
	// with returns clean with pkg p's imports extended by imports (or p
	// added when clean lacks it).
	with := func(p string, imports ...string) []Package {
		g := slices.Clone(clean)
		for i := range g {
			if g[i].ImportPath == p {
				g[i].Imports = append(slices.Clone(g[i].Imports), imports...)
				return g
			}
		}
		return append(g, pkg(m, p, imports...))
	}

	if v := Check(Module, clean, Rules); len(v) != 0 {
		t.Fatalf("Check reports a graph that keeps every rule: %v", v)
	}

	tests := []struct {
		name      string
		graph     []Package
		wantRule  string
		wantChain []string
	}{
		{"internal imports client", with(producer, client), "no package but cmd/*",
			[]string{producer, client}},
		{"maintenance imports client through internal", with(retry, client), "no package but cmd/*",
			[]string{maint, retry, client}},
		{"driver imports internal", with(pgxv5, retry), "driver never imports internal/* or client",
			[]string{pgxv5, retry}},
		{"driver imports client", with(driver, client), "driver never imports internal/* or client",
			[]string{driver, client}},
		{"startstop imports millracetype", with(ss, types), "startstop and millracetype import nothing of ours",
			[]string{ss, types}},
		{"millracetype imports driver", with(types, driver), "startstop and millracetype import nothing of ours",
			[]string{types, driver}},
		{"client imports migrate", with(client, migrate), "client does not import migrate",
			[]string{client, migrate}},
		{"client imports migrate through maintenance", with(maint, migrate), "client does not import migrate",
			[]string{client, maint, migrate}},
		{"a package imports River", with(retry, river), "the core module never imports River",
			[]string{retry, river}},
		{"a test imports River", with(producer+"_test ["+producer+".test]", river), "the core module never imports River",
			[]string{producer + "_test [" + producer + ".test]", river}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			found := false
			for _, v := range Check(Module, tt.graph, Rules) {
				if strings.HasPrefix(v.Rule, tt.wantRule) && slices.Equal(v.Chain, tt.wantChain) {
					found = true
				}
			}
			if !found {
				t.Errorf("Check did not report %q with chain %v; it reported %v", tt.wantRule, tt.wantChain, Check(Module, tt.graph, Rules))
			}
		})
	}
}
