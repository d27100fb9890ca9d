package pocketllm

import (
	"reflect"
	"slices"
	"testing"

	"pocketllm-native/bindings"
	"pocketllm-native/compress/matrix"
)

// TestCompressReleasingMatchesCompress: dropping the weights during
// training and reading them again for the final error gives the same
// result, and the stored error is exactly what Reconstruct's weights
// give (each member decoded on its own, as a reader decodes it).
func TestCompressReleasingMatchesCompress(t *testing.T) {
	k := bindings.Go()
	fresh := func() []matrix.Matrix {
		return []matrix.Matrix{lowRank("a", 48, 30, 1), lowRank("b", 40, 30, 2), lowRank("c", 8, 30, 3)}
	}
	for _, st := range []Settings{quick(4, 64), func() Settings { s := quick(8, 32); s.KMeansInit = false; return s }()} {
		want, err := Compress(k, fresh(), st, nil)
		if err != nil {
			t.Fatal(err)
		}
		mats := fresh()
		orig := fresh()
		var reloaded []int
		got, err := CompressReleasing(k, mats, st, nil, func(i int, dst []float32) error {
			reloaded = append(reloaded, i)
			if len(dst) != len(orig[i].Data) {
				t.Fatalf("member %d: reload into %d values, want %d", i, len(dst), len(orig[i].Data))
			}
			copy(dst, orig[i].Data)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("d=%d: CompressReleasing's result differs from Compress's", st.Dim)
		}
		if !slices.Equal(reloaded, []int{0, 1, 2}) {
			t.Errorf("reloaded members %v, want each once in order", reloaded)
		}
		for i, m := range mats {
			if m.Data != nil {
				t.Errorf("member %d: weights not released", i)
			}
		}
		out, err := Reconstruct(k, want, [][2]int{{48, 30}, {40, 30}, {8, 30}})
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range orig {
			if e := matrix.NMSE(m.Data, out[i]); e != want.NMSE[i] {
				t.Errorf("member %d: stored error %v, Reconstruct's weights give %v", i, want.NMSE[i], e)
			}
		}
	}
}
