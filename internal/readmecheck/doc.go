// Package readmecheck holds no code: its test builds the Go code of the
// repository's README.md in a module of its own, as a user would paste it,
// and runs the getting-started program to 1,000 jobs worked, so the README
// cannot drift from the API.
package readmecheck
