package main

import (
	"os"
	"testing"

	"github.com/ferry-matrix/ferry/config"
)

// state.instance names the instance (a recreated container keeps it);
// without it, the host name and listen address do.
func TestServeInstanceName(t *testing.T) {
	cfg := &config.Config{}
	cfg.Appservice.Listen = "0.0.0.0:8009"
	host, _ := os.Hostname()
	if got := instanceName(cfg); got != host+"/0.0.0.0:8009" {
		t.Errorf("default instance name %q", got)
	}
	cfg.State.Instance = "ferry-0"
	if got := instanceName(cfg); got != "ferry-0" {
		t.Errorf("with state.instance: %q", got)
	}
}
