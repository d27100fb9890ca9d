// Package testfs holds what tests about written files share: listing what
// a run left in a folder.
package testfs

import (
	"os"
	"testing"
)

// Names lists the entries of dir, sorted, failing t when dir cannot be read.
func Names(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
