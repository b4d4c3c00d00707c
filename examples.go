// Package ferry holds the files a new admin starts from, embedded so that
// the binary carries them: config.example.yaml, the commented example
// configuration (the config package exposes it as config.Example).
package ferry

import _ "embed"

// ConfigExample is config.example.yaml.
//
//go:embed config.example.yaml
var ConfigExample []byte
