//go:build tools

// Package tools pins the module dependencies the project has chosen before
// every one of them is imported by real code.
package tools
import (
 _ "github.com/ebitengine/purego"
 _ "gonum.org/v1/gonum/mat"
 _ "github.com/urfave/cli/v2"
 _ "github.com/google/go-cmp/cmp"
)
