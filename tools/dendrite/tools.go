//go:build tools

// Package tools pins the Dendrite homeserver the tests run against. It is
// its own module so that Dendrite's dependencies cannot clash with Ferry's.
// Build: go build -o DIR/dendrite github.com/element-hq/dendrite/cmd/dendrite
package tools

import (
	_ "github.com/element-hq/dendrite/cmd/dendrite"
)
