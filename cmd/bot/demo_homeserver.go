package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferry-matrix/ferry/internal/dendriteproc"
	"github.com/ferry-matrix/ferry/internal/matrixadmin"
	"github.com/ferry-matrix/ferry/internal/pgproc"
	"github.com/ferry-matrix/ferry/internal/synapseproc"
)

// demoHomeserver is the demo's running homeserver, Ferry's appservice
// registered with it.
type demoHomeserver struct {
	url string
	// implementation and sourceYAML are Ferry's config for it:
	// homeserver.implementation and the source section.
	implementation, sourceYAML string
	register                   func(localpart, password string, admin bool) (string, error)
	// stop stops it; its files stay when keep.
	stop func(keep bool)
}

// startDemoHomeserver starts a homeserver for domain in dir with the
// appservice registration regFile, telling what it does through step.
type startDemoHomeserver func(ctx context.Context, dir, domain, regFile string, step func(string, ...any)) (*demoHomeserver, error)

// demoDendrite: Dendrite v0.15.2 (its binaries in bin) on one SQLite file
// set under dir, the appservice in app_service_api.config_files.
func demoDendrite(bin string) startDemoHomeserver {
	return func(ctx context.Context, dir, domain, regFile string, step func(string, ...any)) (*demoHomeserver, error) {
		dendriteDir := filepath.Join(dir, "dendrite")
		if err := os.MkdirAll(dendriteDir, 0o700); err != nil {
			return nil, err
		}
		d, err := dendriteproc.New(bin, dendriteDir, domain, "")
		if err != nil {
			return nil, err
		}
		if err := d.AddAppservice(regFile); err != nil {
			return nil, err
		}
		step("starting Dendrite v0.15.2 for %s on one SQLite file set (%s)", domain, dendriteDir)
		if err := d.Start(0); err != nil {
			return nil, err
		}
		return &demoHomeserver{url: d.URL, implementation: "dendrite", sourceYAML: fmt.Sprintf("source: {dendrite_config: %q}", d.Config()),
			register: d.Register, stop: func(bool) { d.Stop() }}, nil
	}
}

// demoSynapse: Synapse 1.160 from the chroot (scripts/lib/synapse.sh) on
// a private PostgreSQL cluster, its schema made by update_synapse_database,
// the appservice in app_service_config_files. Ferry reads its database,
// media store, signing key and homeserver.yaml.
func demoSynapse(chroot string) startDemoHomeserver {
	return func(ctx context.Context, dir, domain, regFile string, step func(string, ...any)) (*demoHomeserver, error) {
		v, err := synapseproc.Version(chroot)
		if err != nil {
			return nil, err
		}
		step("starting a private PostgreSQL cluster for Synapse")
		pg, err := pgproc.Start()
		if err != nil {
			return nil, err
		}
		db, err := pg.CreateDatabase(ctx, "synapse")
		if err != nil {
			pg.Stop()
			return nil, err
		}
		s, err := synapseproc.New(ctx, synapseproc.Options{Chroot: chroot, ServerName: domain, Database: db, AppServices: []string{regFile}})
		if err != nil {
			pg.Stop()
			return nil, err
		}
		stop := func(keep bool) {
			if keep {
				s.Stop()
				fmt.Printf("(kept Synapse's files in %s; its database went with the PostgreSQL cluster)\n", s.Dir)
			} else {
				s.Remove()
			}
			pg.Stop()
		}
		step("creating Synapse %s's schema (update_synapse_database) and starting it for %s (%s)", v, domain, s.Dir)
		if err := s.InitSchema(ctx); err != nil {
			stop(true)
			return nil, err
		}
		if err := s.Start(ctx); err != nil {
			stop(true)
			return nil, err
		}
		register := func(localpart, password string, admin bool) (string, error) {
			return matrixadmin.Register(s.URL, s.Secret, localpart, password, admin)
		}
		source := fmt.Sprintf("source: {database: %q, media_path: %q, signing_key: %q, homeserver_config: %q}", db, s.MediaStore, s.SigningKey, s.Config)
		return &demoHomeserver{url: s.URL, implementation: "synapse", sourceYAML: source, register: register, stop: stop}, nil
	}
}
