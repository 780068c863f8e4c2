package archtest

import (
	"slices"
	"strings"
)

// Module is the core module's path.
const Module = "github.com/millrace/millrace"

// Package is one node of an import graph, as `go list -deps -test -json`
// reports it. A package built for tests carries the test binary in its
// path ("p [p.test]"), and the binary itself is "p.test".
type Package struct {
	ImportPath string
	Imports    []string // direct imports, in the same notation
	// ForTest is set on a package built for the tests of another.
	ForTest string
	// Module is the module holding the package (nil for the standard
	// library).
	Module *struct{ Path string }
}

// Rule is one import rule of the repository. It constrains the packages
// whose path From accepts: none of them may depend, directly or through
// other packages, on a package whose path Forbid accepts. Paths given to
// From and Forbid have any test suffix removed.
type Rule struct {
	// Name states the rule as the README does.
	Name string
	// Tests extends the rule to the test builds of the packages.
	Tests  bool
	From   func(path string) bool
	Forbid func(path string) bool
}

// under reports whether path is dir or inside it (dir is relative to
// Module).
func under(path, dir string) bool {
	dir = Module + "/" + dir
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Rules are the import rules of the core module (see the README's
// contributor section).
var Rules = []Rule{
	{
		Name:   "no package but cmd/* and millracetest imports client (internal/* and maintenance in particular)",
		From:   func(p string) bool { return !under(p, "client") && !under(p, "cmd") && !under(p, "millracetest") },
		Forbid: func(p string) bool { return under(p, "client") },
	},
	{
		Name:   "driver never imports internal/* or client",
		From:   func(p string) bool { return under(p, "driver") },
		Forbid: func(p string) bool { return under(p, "internal") || under(p, "client") },
	},
	{
		Name: "startstop and millracetype import nothing of ours",
		From: func(p string) bool { return under(p, "startstop") || under(p, "millracetype") },
		Forbid: func(p string) bool {
			return p == Module || strings.HasPrefix(p, Module+"/")
		},
	},
	{
		Name:   "client does not import migrate",
		From:   func(p string) bool { return under(p, "client") },
		Forbid: func(p string) bool { return under(p, "migrate") },
	},
	{
		Name:   "the core module never imports River, not even in tests (only bench/, a module of its own, does)",
		Tests:  true,
		From:   func(string) bool { return true },
		Forbid: func(p string) bool { return strings.HasPrefix(p, "github.com/riverqueue/") },
	},
}

// Violation is a package that depends on what a rule forbids it.
type Violation struct {
	Rule    string
	Package string
	// Chain is the import path from Package to the forbidden one,
	// both included.
	Chain []string
}

// String gives the rule and the chain of imports that breaks it.
func (v Violation) String() string {
	return v.Rule + ": " + strings.Join(v.Chain, " -> ")
}

// basePath removes the test suffixes from an import path:
// "p [q.test]" and "p_test [p.test]" give "p" and "p_test", and the test
// binary "p.test" gives "p".
func basePath(path string) (base string, test bool) {
	if i := strings.Index(path, " ["); i >= 0 {
		return path[:i], true
	}
	if strings.HasSuffix(path, ".test") {
		return strings.TrimSuffix(path, ".test"), true
	}
	return path, false
}

// Check applies rules to the packages of module in graph and returns every
// violation, one per rule, package and forbidden package, each with the
// shortest chain of imports that leads to it.
func Check(module string, graph []Package, rules []Rule) []Violation {
	byPath := make(map[string]*Package, len(graph))
	for i := range graph {
		byPath[graph[i].ImportPath] = &graph[i]
	}
	var out []Violation
	for i := range graph {
		pkg := &graph[i]
		if pkg.Module == nil || pkg.Module.Path != module {
			continue
		}
		base, test := basePath(pkg.ImportPath)
		test = test || pkg.ForTest != ""
		for _, rule := range rules {
			if (test && !rule.Tests) || !rule.From(base) {
				continue
			}
			for _, chain := range forbiddenChains(pkg.ImportPath, byPath, rule.Forbid) {
				out = append(out, Violation{Rule: rule.Name, Package: pkg.ImportPath, Chain: chain})
			}
		}
	}
	return out
}

// forbiddenChains walks the imports of start breadth first and returns, for
// each package forbid accepts, the shortest chain from start to it. It does
// not walk past a forbidden package.
func forbiddenChains(start string, byPath map[string]*Package, forbid func(string) bool) [][]string {
	parent := map[string]string{start: ""}
	queue := []string{start}
	var chains [][]string
	for len(queue) > 0 {
		path := queue[0]
		queue = queue[1:]
		pkg := byPath[path]
		if pkg == nil {
			continue
		}
		for _, imp := range pkg.Imports {
			if _, seen := parent[imp]; seen {
				continue
			}
			parent[imp] = path
			if base, _ := basePath(imp); forbid(base) {
				chain := []string{imp}
				for p := path; p != ""; p = parent[p] {
					chain = append(chain, p)
				}
				slices.Reverse(chain)
				chains = append(chains, chain)
				continue
			}
			queue = append(queue, imp)
		}
	}
	return chains
}
