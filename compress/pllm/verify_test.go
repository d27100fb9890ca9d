package pllm

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pocketllm-native/internal/testfs"
)

// writeVerified writes a one-group file to path and closes it with verify.
func writeVerified(t *testing.T, path string, force bool, verify func(*Reader) error) error {
	t.Helper()
	w, err := Create(path, force)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.WriteMeta(Meta{Tool: "test"}); err != nil {
		t.Fatal(err)
	}
	g := Group{Name: "g", Method: "m", Members: []Member{{Name: "w", Shape: []int{2, 2}, DType: "F32"}},
		Arrays: []Array{F32Array("scales", []float32{1, 2})}}
	if err := w.WriteGroup(g); err != nil {
		t.Fatal(err)
	}
	return w.CloseVerified(verify)
}

// A failed read-back check puts nothing in place: no file at the path, no
// temporary file beside it, an existing file (with force) untouched.
func TestCloseVerifiedRefusesWithoutTrace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.pllm")
	refuse := errors.New("the check refused it")
	var seen []string
	err := writeVerified(t, path, false, func(r *Reader) error {
		for _, g := range r.Groups() {
			seen = append(seen, g.Name)
		}
		return refuse
	})
	if !errors.Is(err, refuse) || !strings.Contains(err.Error(), "not put in place") {
		t.Fatalf("error %v, want the check's error saying the file was not put in place", err)
	}
	if !slices.Equal(seen, []string{"g"}) {
		t.Errorf("the check saw groups %v, want [g]", seen)
	}
	if names := testfs.Names(t, dir); len(names) != 0 {
		t.Fatalf("left behind: %v", names)
	}

	os.WriteFile(path, []byte("keep me"), 0o644)
	if err := writeVerified(t, path, true, func(*Reader) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("error %v, want the check's", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Fatalf("a refused file replaced the existing one: %q", b)
	}
	if names := testfs.Names(t, dir); !slices.Equal(names, []string{"out.pllm"}) {
		t.Fatalf("left behind: %v", names)
	}

	// An accepting check puts the file in place, and the file reads back.
	if err := writeVerified(t, path, true, func(r *Reader) error { return r.Layout().Check() }); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func TestCheckFinite(t *testing.T) {
	for _, c := range []struct {
		a    Array
		want string // "" for no error
	}{
		{F32Array("scales", []float32{1, -2, 65504, 1e38}), ""},
		{F16Array("codebook", []float32{0, float32(math.NaN())}), `array "codebook": value 1 of 2 is NaN`},
		{F32Array("decoder_mlp", []float32{float32(math.Inf(-1))}), `array "decoder_mlp": value 0 of 1 is -Inf`},
		{UintArray("indices", 3, []uint32{7}), ""},
	} {
		err := c.a.CheckFinite()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.a.Name, err, c.want)
		}
	}
}
