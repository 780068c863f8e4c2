package readmecheck

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/millrace/millrace/internal/testdb"
)

func TestMain(m *testing.M) { testdb.Main(m) }

// goBlock is one ```go block of the README.
type goBlock struct {
	line int // where it starts, for messages
	code string
	pkg  string
}

var packageRE = regexp.MustCompile(`(?m)^package (\w+)\s*$`)

// readmeGoBlocks returns every ```go block of README.md, indentation (of a
// block inside a list item) removed. Each must be a whole file.
func readmeGoBlocks(t *testing.T, readme string) []goBlock {
	t.Helper()
	var blocks []goBlock
	lines := strings.Split(readme, "\n")
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		if trimmed != "```go" {
			continue
		}
		indent := lines[i][:len(lines[i])-len(trimmed)]
		start := i + 1
		var b strings.Builder
		for i++; i < len(lines) && strings.TrimLeft(lines[i], " ") != "```"; i++ {
			b.WriteString(strings.TrimPrefix(lines[i], indent))
			b.WriteString("\n")
		}
		if i == len(lines) {
			t.Fatalf("README.md:%d: ```go block never closed", start)
		}
		code := b.String()
		m := packageRE.FindStringSubmatch(code)
		if m == nil {
			t.Fatalf("README.md:%d: a ```go block must be a whole file, starting with its package clause and imports, "+
				"so that it compiles as pasted:\n%s", start, code)
		}
		blocks = append(blocks, goBlock{line: start, code: code, pkg: m[1]})
	}
	return blocks
}

// repoRoot is the main module's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}

// userModule writes a module as a user would have after `go mod init` and
// `go get github.com/millrace/millrace`: it requires millrace (replaced by
// this checkout, which is not published under a version) with the same
// versions of its dependencies, and their checksums.
func userModule(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	ourMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var requires []string
	inRequire := false
	for _, l := range strings.Split(string(ourMod), "\n") {
		switch {
		case strings.HasPrefix(l, "require ("):
			inRequire = true
		case inRequire && strings.TrimSpace(l) == ")":
			inRequire = false
		case inRequire && strings.TrimSpace(l) != "":
			requires = append(requires, "\t"+strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), "// indirect")))
		}
	}
	goMod := fmt.Sprintf("module example.com/app\n\ngo 1.26.0\n\nrequire (\n\tgithub.com/millrace/millrace v0.0.0\n%s\n)\n\nreplace github.com/millrace/millrace => %s\n",
		strings.Join(requires, "\n"), root)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// TestReadmeGoCode builds (and vets) every Go block of README.md as its own
// package of a user's module, then runs the getting-started program (the
// block that is package main) against a fresh, empty database: it must
// migrate it and work its 1,000 jobs.
func TestReadmeGoCode(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not on PATH")
	}
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeGoBlocks(t, string(readme))
	if len(blocks) < 3 {
		t.Fatalf("README.md has %d ```go blocks; want the getting-started program, Using it and Migrations", len(blocks))
	}
	dir := userModule(t, root)
	var mains []string
	for i, b := range blocks {
		name := fmt.Sprintf("block%02d_line%d", i+1, b.line)
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "code.go"), []byte(b.code), 0o644); err != nil {
			t.Fatal(err)
		}
		if b.pkg == "main" {
			mains = append(mains, name)
		}
	}
	goCmd(t, dir, "vet", "./...")
	if len(mains) != 1 {
		t.Fatalf("README.md has %d main programs (%v); want the getting-started one", len(mains), mains)
	}
	bin := filepath.Join(dir, "app")
	goCmd(t, dir, "build", "-o", bin, "./"+mains[0])

	url := testdb.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("getting-started program: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if !regexp.MustCompile(`^1000 jobs worked in \S+\n$`).MatchString(stdout.String()) {
		t.Fatalf("getting-started program printed %q (stderr %q)", stdout.String(), stderr.String())
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var completed int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'square' AND state = 'completed'`).Scan(&completed); err != nil {
		t.Fatal(err)
	}
	if completed != 1000 {
		t.Fatalf("%d square jobs completed in the database; want 1000", completed)
	}
}
