package pipeline

import (
	"testing"

	"pocketllm-native/internal/nativetest"
)

// The native backends are found through POCKETLLM_LIB_DIR only; point it at
// this checkout's build unless the caller (make) already has.
func TestMain(m *testing.M) { nativetest.Main(m) }
