//go:build tools

// Package tools pins fake-gcs-server, the Google Cloud Storage emulator the
// storage tests run gs:// against (built by scripts/test into the cache).
package tools

import _ "github.com/fsouza/fake-gcs-server"
