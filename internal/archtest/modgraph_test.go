package archtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// modulePath is the core module's path.
const modulePath = "github.com/millrace/millrace"

// heavyModule matches the modules that only the container path of the tests
// needs (testcontainers-go and the Docker client it brings).
var heavyModule = regexp.MustCompile(`testcontainers|docker|moby|containerd|opencontainers`)

// goCmd returns a go command run in dir with env added to ours.
func goCmd(t *testing.T, dir string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// goOutput runs the go command and returns its standard output, failing t
// with its standard error when it fails.
func goOutput(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := goCmd(t, dir, env, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return string(out)
}

// moduleRoot returns the directory of the core module.
func moduleRoot(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(goOutput(t, ".", nil, "list", "-m", "-f", "{{.Dir}}"))
}

// TestCoreRequiresNoContainerModules checks the core go.mod: the container
// path of internal/testdb lives in its own module (containerpg), so nothing
// of testcontainers-go or Docker is required here.
func TestCoreRequiresNoContainerModules(t *testing.T) {
	t.Parallel()
	var mod struct {
		Require []struct{ Path string }
	}
	out := goOutput(t, moduleRoot(t), nil, "mod", "edit", "-json")
	if err := json.Unmarshal([]byte(out), &mod); err != nil {
		t.Fatalf("parse go mod edit -json: %v", err)
	}
	for _, r := range mod.Require {
		if heavyModule.MatchString(r.Path) {
			t.Errorf("the core go.mod requires %s; keep it in internal/testdb/containerpg's module", r.Path)
		}
	}
}

// TestAppModuleGraphIsSmall builds a scratch application that imports client
// and driver/pgxv5, runs go mod tidy in it (with a replace directive to this
// checkout) and checks that its go.sum names no testcontainers or Docker
// module. It runs offline when the module cache holds what it needs (the
// cache is tried first as a file proxy); else it uses GOPROXY as configured.
func TestAppModuleGraphIsSmall(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	app := t.TempDir()
	goMod := "module example.com/app\n\ngo 1.26.0\n\nrequire " + modulePath + " v0.0.0\n\nreplace " + modulePath + " => " + root + "\n"
	mainGo := `package main

import (
	_ "` + modulePath + `/client"
	_ "` + modulePath + `/driver/pgxv5"
)

func main() {}
`
	for name, text := range map[string]string{"go.mod": goMod, "main.go": mainGo} {
		if err := os.WriteFile(filepath.Join(app, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cache := strings.TrimSpace(goOutput(t, app, nil, "env", "GOMODCACHE"))
	proxy := strings.TrimSpace(goOutput(t, app, nil, "env", "GOPROXY"))
	env := []string{
		"GOFLAGS=-mod=mod",
		"GOWORK=off",
		"GOPROXY=file://" + filepath.ToSlash(filepath.Join(cache, "cache", "download")) + "," + proxy,
		// The scratch module is never built or shipped; only the names in
		// its go.sum are read, so checksum-database lookups (which need the
		// network) are not wanted.
		"GOSUMDB=off",
	}
	goOutput(t, app, env, "mod", "tidy")

	sum, err := os.ReadFile(filepath.Join(app, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(sum), "\n") {
		if path, _, ok := strings.Cut(line, " "); ok {
			seen[path] = true
		}
	}
	if !seen["github.com/jackc/pgx/v5"] {
		t.Fatalf("the app's go.sum lacks github.com/jackc/pgx/v5, so this check did not see the real graph:\n%s", sum)
	}
	for path := range seen {
		if heavyModule.MatchString(path) {
			t.Errorf("go mod tidy in an app importing client and driver/pgxv5 puts %s in its go.sum", path)
		}
	}
	t.Logf("the app's go.sum names %d modules", len(seen))
}

// sqliteModule matches the pure-Go SQLite the SQLite driver's module
// brings (modernc.org/sqlite and its libc).
var sqliteModule = regexp.MustCompile(`^modernc\.org/`)

// TestCoreHasNoSQLite checks the core module's graph: the SQLite driver and
// the command line that runs the demo on it are modules of their own
// (driver/sqlite, cmd/millrace), so nothing of modernc.org is in `go list
// -m all`.
func TestCoreHasNoSQLite(t *testing.T) {
	t.Parallel()
	out := goOutput(t, moduleRoot(t), []string{"GOWORK=off"}, "list", "-m", "all")
	mods := strings.Fields(out)
	if len(mods) == 0 || !strings.Contains(out, "github.com/jackc/pgx/v5") {
		t.Fatalf("go list -m all of the core lacks pgx, so this check did not see the real graph:\n%s", out)
	}
	if bad := findModules(out, sqliteModule); len(bad) > 0 {
		t.Errorf("the core module's graph has %v; keep SQLite in driver/sqlite's module", bad)
	}
}

// findModules returns the module paths of `go list -m all` output that
// match re.
func findModules(listing string, re *regexp.Regexp) []string {
	var found []string
	for line := range strings.Lines(listing) {
		if f := strings.Fields(line); len(f) > 0 && re.MatchString(f[0]) {
			found = append(found, f[0])
		}
	}
	return found
}

// The check catches a graph that has SQLite in it.
func TestFindModulesCatchesSQLite(t *testing.T) {
	t.Parallel()
	listing := "github.com/millrace/millrace\ngithub.com/jackc/pgx/v5 v5.7.0\nmodernc.org/sqlite v1.62.0\n"
	if got := findModules(listing, sqliteModule); len(got) != 1 || got[0] != "modernc.org/sqlite" {
		t.Fatalf("findModules = %v, want [modernc.org/sqlite]", got)
	}
	if got := findModules("github.com/jackc/pgx/v5 v5.7.0\n", sqliteModule); len(got) != 0 {
		t.Fatalf("findModules of a clean graph = %v", got)
	}
}
