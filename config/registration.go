package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Registration is the appservice registration file the homeserver reads
// (Synapse: app_service_config_files; Dendrite: app_service_api.config_files).
type Registration struct {
	ID              string     `yaml:"id"`
	URL             string     `yaml:"url"`
	ASToken         string     `yaml:"as_token"`
	HSToken         string     `yaml:"hs_token"`
	SenderLocalpart string     `yaml:"sender_localpart"`
	RateLimited     bool       `yaml:"rate_limited"`
	Namespaces      Namespaces `yaml:"namespaces"`
}

// Namespaces of a registration: Ferry claims only its bot user.
type Namespaces struct {
	Users   []Namespace `yaml:"users"`
	Aliases []Namespace `yaml:"aliases"`
	Rooms   []Namespace `yaml:"rooms"`
}

// Namespace is one regex a registration claims.
type Namespace struct {
	Exclusive bool   `yaml:"exclusive"`
	Regex     string `yaml:"regex"`
}

// RegistrationYAML returns the registration for this configuration. The
// tokens must be set (in the config or its token files) and must not be
// the example's placeholders.
func (c *Config) RegistrationYAML() ([]byte, error) {
	as, hs := string(c.Appservice.ASToken), string(c.Appservice.HSToken)
	switch {
	case c.Homeserver.Domain == "" || c.Appservice.Address == "":
		return nil, errors.New("homeserver.domain and appservice.address are needed for the registration")
	case as == "" || hs == "" || strings.HasPrefix(as, "CHANGE_ME") || strings.HasPrefix(hs, "CHANGE_ME"):
		return nil, errors.New("set appservice.as_token and appservice.hs_token (or as_token_file and hs_token_file) to two different long random values first, e.g. from `openssl rand -hex 32`")
	case as == hs:
		return nil, errors.New("appservice.as_token and appservice.hs_token must differ: one authenticates Ferry to the homeserver, the other the homeserver to Ferry")
	}
	reg := Registration{ID: c.Appservice.ID, URL: c.Appservice.Address, ASToken: as, HSToken: hs,
		SenderLocalpart: c.Appservice.BotLocalpart,
		Namespaces: Namespaces{Users: []Namespace{{Exclusive: true,
			Regex: "^" + regexp.QuoteMeta("@"+c.Appservice.BotLocalpart+":"+c.Homeserver.Domain) + "$"}},
			Aliases: []Namespace{}, Rooms: []Namespace{}}}
	out, err := yaml.Marshal(&reg)
	if err != nil {
		return nil, err
	}
	return append([]byte(fmt.Sprintf("# Ferry's appservice registration, generated from its config: give it to the homeserver.\n# It holds both tokens: keep it private (mode 0600).\n")), out...), nil
}
