//go:build tools

// Package tools pins the S3-compatible server Ferry's tests run against. It is
// a separate module so that versitygw's dependencies never meet Ferry's pins.
package tools

import _ "github.com/versity/versitygw/cmd/versitygw"
