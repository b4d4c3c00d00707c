// Package config reads Ferry's configuration file (see config.example.yaml,
// embedded as Example). Decoding is strict: an unknown key is an error, so a
// typo cannot silently turn a feature off. Validate reports every problem at
// once, each naming the key and what to do.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	ferry "github.com/ferry-matrix/ferry"
	"github.com/ferry-matrix/ferry/archive/keywrap"
	"github.com/ferry-matrix/ferry/exporter"
	"github.com/ferry-matrix/ferry/internal/ratelimit"
)

// Example is the commented example configuration, config.example.yaml at
// the top of the repository.
var Example = ferry.ConfigExample

// Config is the whole configuration.
type Config struct {
	Homeserver Homeserver `yaml:"homeserver"`
	Appservice Appservice `yaml:"appservice"`
	Admins     Admins     `yaml:"admins"`
	Source     Source     `yaml:"source"`
	Storage    Storage    `yaml:"storage"`
	Encryption Encryption `yaml:"encryption"`
	State      State      `yaml:"state"`
	Schedules  []Schedule `yaml:"schedules"`
	// ImportTargets are the homeservers import jobs may write into.
	ImportTargets []ImportTarget `yaml:"import_targets"`
	Limits        Limits         `yaml:"limits"`
	API           API            `yaml:"api"`
}

// API configures the HTTP API for admins' tooling.
type API struct {
	// PublicURL is how clients reach Ferry; download links start with it.
	PublicURL string     `yaml:"public_url"`
	Tokens    []APIToken `yaml:"tokens"`
	// RatePerSecond each client may make (burst: twice that).
	RatePerSecond float64 `yaml:"rate_per_second"`
	// TrustedProxies are the reverse proxies (addresses or CIDR prefixes)
	// whose X-Forwarded-For names the client; from anywhere else the
	// header is ignored. Rate limits and the audit log use that address.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// APIToken is one bearer token with a role (admin or reader).
type APIToken struct {
	Name  string `yaml:"name"`
	Role  string `yaml:"role"`
	Token Secret `yaml:"token"`
}

type Homeserver struct {
	URL            string `yaml:"url"`
	Domain         string `yaml:"domain"`
	Implementation string `yaml:"implementation"` // synapse | dendrite
}

type Appservice struct {
	Address      string `yaml:"address"`
	Listen       string `yaml:"listen"`
	ID           string `yaml:"id"`
	BotLocalpart string `yaml:"bot_localpart"`
	ASToken      Secret `yaml:"as_token"`
	HSToken      Secret `yaml:"hs_token"`
	ASTokenFile  string `yaml:"as_token_file"`
	HSTokenFile  string `yaml:"hs_token_file"`
}

type Admins struct {
	Users []string `yaml:"users"`
	Rooms []string `yaml:"rooms"`
}

type Source struct {
	Database   Secret `yaml:"database"` // a URL that may hold a password
	MediaPath  string `yaml:"media_path"`
	SigningKey string `yaml:"signing_key"`
	// HomeserverConfig is Synapse's homeserver.yaml (optional).
	HomeserverConfig string `yaml:"homeserver_config"`
	// DendriteConfig is Dendrite's dendrite.yaml: its databases, media
	// directory and signing key are read from it (the keys above are then
	// not used).
	DendriteConfig string `yaml:"dendrite_config"`
}

type Storage struct {
	URL            string   `yaml:"url"`
	LinkLifetime   Duration `yaml:"link_lifetime"`
	LinkSecretFile string   `yaml:"link_secret_file"`
	// ImportFrom are further bucket URLs (with their prefix) that the
	// bot's `!import URL` may read archives from, beside URL itself.
	ImportFrom []string `yaml:"import_from"`
}

type Encryption struct {
	Recipients      []string            `yaml:"recipients"`
	AdminRecipients map[string][]string `yaml:"admin_recipients"`
	// IdentityFile holds age identities (AGE-SECRET-KEY-1... lines) that
	// verify and import jobs open archives with; its recipient belongs in
	// Recipients. Optional: without it, verify jobs check encrypted
	// archives from the outside only.
	IdentityFile string `yaml:"identity_file"`
}

// ImportTarget is a homeserver that import jobs may write into. It must
// be stopped while an import runs.
type ImportTarget struct {
	Name           string `yaml:"name"`
	Implementation string `yaml:"implementation"` // dendrite | synapse
	Config         string `yaml:"config"`         // the target's dendrite.yaml or homeserver.yaml
	Helper         string `yaml:"helper"`         // Dendrite: ferry-dendrite-import; empty: beside bot or on $PATH
	// Synapse: the database Synapse 1.160 initialised, its media store,
	// where the signing key goes (default: signing_key_path of config) and
	// the update_synapse_database that runs its background updates (empty:
	// Synapse runs them when it starts).
	Database              Secret `yaml:"database"`
	MediaStore            string `yaml:"media_store"`
	SigningKeyFile        string `yaml:"signing_key_file"`
	UpdateSynapseDatabase string `yaml:"update_synapse_database"`
}

type State struct {
	Database Secret `yaml:"database"`
	// KeyFile holds the key that seals the secrets kept in the state
	// database (key lines of running jobs, unrevealed personal-export
	// keys); created (0600) if missing. Default: state.key beside
	// storage.link_secret_file. Every instance sharing a database needs
	// the same file.
	KeyFile string `yaml:"key_file"`
	// Instance names this instance among those sharing a PostgreSQL
	// state database (its River client ID), so that a restarted instance
	// resumes the jobs it was running at once. Default: the host name and
	// appservice.listen, which a container or pod recreated under a new
	// host name does not keep; set it there (e.g. the StatefulSet pod's
	// name). Two instances running at once must not share it: the second
	// refuses to start. A SQLite state database serves one instance, which
	// resumes every interrupted job whatever its name.
	Instance string `yaml:"instance"`
}

type Schedule struct {
	Name   string   `yaml:"name"`
	Cron   string   `yaml:"cron"`
	Type   string   `yaml:"type"` // full | partial
	Keep   int      `yaml:"keep"`
	MaxAge Duration `yaml:"max_age"`
	// Rooms and Users select a partial export (at least one of them).
	Rooms []string `yaml:"rooms"`
	Users []string `yaml:"users"`
	// Media: all | referenced | none (default: all for full, referenced for partial).
	Media string `yaml:"media"`
	// Verify each archive after it is published (a verify job).
	Verify bool `yaml:"verify"`
}

type Limits struct {
	ConcurrentJobs int `yaml:"concurrent_jobs"`
	MydataPerDay   int `yaml:"mydata_per_day"`
	// CommandsPerMinute each user may send the bot (bursts of half).
	CommandsPerMinute int `yaml:"commands_per_minute"`
}

// Secret is a string that never prints: tokens and database URLs with
// passwords stay out of logs and error messages.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString keeps %#v from printing it too.
func (s Secret) GoString() string { return s.String() }

// Duration is a time.Duration written as "24h" or "90m".
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 24h, 90m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Defaults fills what a minimal file leaves out.
// PublicURL is where Ferry's own links (/download, /reveal, /unlock)
// point: api.public_url, or the listener when none is set.
func (c *Config) PublicURL() string {
	if c.API.PublicURL != "" {
		return c.API.PublicURL
	}
	return "http://" + c.Appservice.Listen
}

func (c *Config) Defaults() {
	if c.Storage.URL == "" {
		c.Storage.URL = "file:///var/lib/ferry/archives"
	}
	if c.State.KeyFile == "" && c.Storage.LinkSecretFile != "" {
		c.State.KeyFile = filepath.Join(filepath.Dir(c.Storage.LinkSecretFile), "state.key")
	}
	if c.Storage.LinkLifetime == 0 {
		c.Storage.LinkLifetime = Duration(24 * time.Hour)
	}
	if c.Appservice.ID == "" {
		c.Appservice.ID = "ferry"
	}
	if c.Appservice.BotLocalpart == "" {
		c.Appservice.BotLocalpart = "ferry"
	}
	if c.Limits.ConcurrentJobs == 0 {
		c.Limits.ConcurrentJobs = 1
	}
	if c.Limits.MydataPerDay == 0 {
		c.Limits.MydataPerDay = 2
	}
	if c.Limits.CommandsPerMinute == 0 {
		c.Limits.CommandsPerMinute = 30
	}
}

// Parse decodes a configuration strictly and applies defaults.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.Defaults()
	return &c, nil
}

// Load reads and parses a configuration file, then reads token files.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, tf := range []struct {
		file string
		dst  *Secret
	}{{c.Appservice.ASTokenFile, &c.Appservice.ASToken}, {c.Appservice.HSTokenFile, &c.Appservice.HSToken}} {
		if tf.file == "" {
			continue
		}
		b, err := os.ReadFile(tf.file)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		*tf.dst = Secret(strings.TrimSpace(string(b)))
	}
	return c, nil
}

// Validate checks the whole configuration (what `bot run` needs) and
// returns every problem found.
func (c *Config) Validate() error {
	return errors.Join(c.validateBot(), c.ValidateService())
}

// validateBot checks what only the Matrix bot uses: the homeserver's URL,
// the appservice tokens and the admins.
func (c *Config) validateBot() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(c.Homeserver.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		bad("homeserver.url", "%q is not an http(s) URL", c.Homeserver.URL)
	}
	for key, tok := range map[string]Secret{"appservice.as_token": c.Appservice.ASToken, "appservice.hs_token": c.Appservice.HSToken} {
		switch {
		case tok == "":
			bad(key, "missing: run `bot generate-registration` and copy the tokens, or set %s_file", key)
		case strings.HasPrefix(string(tok), "CHANGE_ME"):
			bad(key, "still the example placeholder: run `bot generate-registration` for real tokens")
		case len(tok) < 32:
			bad(key, "too short to be secret (%d characters; use 32 or more)", len(tok))
		}
	}
	if c.Appservice.ASToken != "" && c.Appservice.ASToken == c.Appservice.HSToken {
		bad("appservice", "as_token and hs_token must differ")
	}
	for _, u := range c.Admins.Users {
		if !strings.HasPrefix(u, "@") || !strings.Contains(u, ":") {
			bad("admins.users", "%q is not a Matrix user ID", u)
		}
	}
	for _, r := range c.Admins.Rooms {
		if !strings.HasPrefix(r, "!") || !strings.Contains(r, ":") {
			bad("admins.rooms", "%q is not a room ID (!id:server)", r)
		}
	}
	if len(c.Admins.Users) == 0 {
		bad("admins.users", "no admins: nobody could run an export")
	}
	return errors.Join(errs...)
}

// ValidateService checks what the job workers and the HTTP API use
// (`bot serve`): the source, storage, encryption, state, schedules, API
// tokens and limits.
func (c *Config) ValidateService() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Homeserver.Domain == "" || strings.ContainsAny(c.Homeserver.Domain, "/@ ") {
		bad("homeserver.domain", "%q is not a server name (example.org)", c.Homeserver.Domain)
	}
	switch c.Homeserver.Implementation {
	case "synapse":
		if c.Source.Database == "" {
			bad("source.database", "missing: the Synapse PostgreSQL URL Ferry reads from")
		}
	case "dendrite":
		if c.Source.DendriteConfig == "" {
			bad("source.dendrite_config", "missing: the path of dendrite.yaml (Ferry reads its databases, media and key from it)")
		}
	default:
		bad("homeserver.implementation", "%q is not supported: use synapse or dendrite", c.Homeserver.Implementation)
	}
	if _, err := url.Parse(c.Storage.URL); err != nil || !strings.Contains(c.Storage.URL, "://") {
		bad("storage.url", "%q is not a bucket URL (file:///path, s3://bucket?...)", c.Storage.URL)
	}
	if len(c.Encryption.Recipients) > 0 {
		if _, err := keywrap.ParseRecipients(c.Encryption.Recipients); err != nil {
			bad("encryption.recipients", "%v", err)
		}
	}
	for admin, recips := range c.Encryption.AdminRecipients {
		if _, err := keywrap.ParseRecipients(recips); err != nil {
			bad("encryption.admin_recipients."+admin, "%v", err)
		}
	}
	if len(c.Encryption.Recipients) == 0 && len(c.Encryption.AdminRecipients) == 0 {
		bad("encryption.recipients", "no recipients: archives could not be encrypted (add an age1... or ssh-ed25519 key)")
	}
	for i, s := range c.Schedules {
		key := fmt.Sprintf("schedules[%d]", i)
		if _, err := cron.ParseStandard(s.Cron); err != nil {
			bad(key+".cron", "%q: use 5 fields (minute hour day month weekday) or @daily, @every 6h, ...: %v", s.Cron, err)
		}
		if s.Type == "" {
			bad(key+".type", "missing: use full or partial")
		}
		// The selection is checked where chat's and the API's are.
		var problems interface{ Unwrap() []error }
		if errors.As(exporter.Selection{Type: s.Type, Rooms: s.Rooms, Users: s.Users, Media: s.Media}.Validate(), &problems) {
			for _, err := range problems.Unwrap() {
				var se *exporter.SelectionError
				if errors.As(err, &se) {
					bad(key+"."+se.Field, "%s", se.Reason)
				}
			}
		}
		if s.Keep < 0 {
			bad(key+".keep", "must not be negative")
		}
	}
	for i, t := range c.API.Tokens {
		key := fmt.Sprintf("api.tokens[%d]", i)
		if t.Name == "" {
			bad(key+".name", "missing: it names the token in the audit log")
		}
		if t.Role != "admin" && t.Role != "reader" {
			bad(key+".role", "%q: use admin or reader", t.Role)
		}
		if strings.HasPrefix(string(t.Token), "CHANGE_ME") {
			bad(key+".token", "still the example placeholder: use a long random value")
		} else if len(t.Token) < 32 {
			bad(key+".token", "too short to be secret (%d characters; use 32 or more)", len(t.Token))
		}
	}
	if _, err := ratelimit.ParsePrefixes(c.API.TrustedProxies); err != nil {
		bad("api.trusted_proxies", "%v", err)
	}
	for i, u := range c.Storage.ImportFrom {
		if _, err := url.Parse(u); err != nil || !strings.Contains(u, "://") {
			bad(fmt.Sprintf("storage.import_from[%d]", i), "%q is not a bucket URL (file:///path, s3://bucket/prefix?...)", u)
		}
	}
	if c.API.PublicURL != "" {
		if u, err := url.Parse(c.API.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			bad("api.public_url", "%q is not an http(s) URL", c.API.PublicURL)
		}
	}
	for i, sch := range c.Schedules {
		if sch.Name == "" {
			bad(fmt.Sprintf("schedules[%d].name", i), "missing: archives are named after their schedule")
		}
	}
	names := map[string]bool{}
	for i, t := range c.ImportTargets {
		key := fmt.Sprintf("import_targets[%d]", i)
		if t.Name == "" || names[t.Name] {
			bad(key+".name", "%q: every target needs a name of its own (import requests name it)", t.Name)
		}
		names[t.Name] = true
		switch t.Implementation {
		case "dendrite":
			if t.Config == "" {
				bad(key+".config", "missing: the target's dendrite.yaml")
			}
		case "synapse":
			if t.Config == "" {
				bad(key+".config", "missing: the target's homeserver.yaml")
			}
			if t.Database == "" {
				bad(key+".database", "missing: the PostgreSQL URL of the target's database (initialised by Synapse 1.160's update_synapse_database)")
			}
			if t.MediaStore == "" {
				bad(key+".media_store", "missing: the target's media_store_path")
			}
		default:
			bad(key+".implementation", "%q: use dendrite or synapse", t.Implementation)
		}
	}
	if c.Limits.ConcurrentJobs < 1 {
		bad("limits.concurrent_jobs", "must be at least 1")
	}
	return errors.Join(errs...)
}
