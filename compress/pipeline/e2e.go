package pipeline

import (
	"fmt"

	"pocketllm-native/compress/checkpoint"
)

func (o CompressOptions) tuneEndToEnd(src *checkpoint.Source, groups []*trained, cal *Calibrated) error {
	return fmt.Errorf("end-to-end tuning: TODO")
}
