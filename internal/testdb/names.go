package testdb

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
)

const (
	// maxNameLen is the longest schema or database name testdb makes. It
	// leaves room under PostgreSQL's 63-byte limit for names that tests
	// derive from it.
	maxNameLen = 46
	// randomHexLen is the length of the random part of a name.
	randomHexLen = 10
)

// uniqueName returns t_<prefix of the sanitised test name>_<random hex>, at
// most maxNameLen bytes, matching ^[a-z_][a-z0-9_]*$.
func uniqueName(testName string) string {
	random := make([]byte, randomHexLen/2)
	_, _ = rand.Read(random) // never fails, per crypto/rand
	suffix := hex.EncodeToString(random)

	prefix := sanitize(testName)
	room := maxNameLen - len("t_") - len("_") - len(suffix)
	if len(prefix) > room {
		prefix = strings.TrimRight(prefix[:room], "_")
	}
	if prefix == "" {
		return "t_" + suffix
	}
	return "t_" + prefix + "_" + suffix
}

// sanitize lowercases s, turns every run of characters outside [a-z0-9] into
// one underscore, and trims underscores from both ends.
func sanitize(s string) string {
	var b strings.Builder
	pendingUnderscore := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if pendingUnderscore && b.Len() > 0 {
				b.WriteByte('_')
			}
			pendingUnderscore = false
			b.WriteRune(r)
			continue
		}
		pendingUnderscore = true
	}
	return b.String()
}

// withDatabase returns connString with its database replaced by name. It
// accepts both URLs (postgres://...) and keyword/value strings (host=...).
func withDatabase(connString, name string) (string, error) {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("parse connection URL: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In a keyword/value string the last setting of a keyword wins.
	return connString + " dbname=" + name, nil
}

// hasPoolMaxConns reports whether connString sets pgxpool's pool_max_conns.
func hasPoolMaxConns(connString string) bool {
	return strings.Contains(connString, "pool_max_conns")
}
