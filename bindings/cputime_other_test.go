//go:build !unix

package bindings

func processCPUSeconds() float64 { return 0 }
