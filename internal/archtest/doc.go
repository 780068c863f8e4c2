// Package archtest holds no code of its own: its tests check the shape of
// the repository, so that a change which breaks the layout fails `make test`.
//
// They check that the applications' module graph stays small (an app that
// imports client and driver/pgxv5 gets no testcontainers or Docker modules in
// its go.sum) and that imports between millrace's packages follow the rules
// in the README's contributor section.
package archtest
