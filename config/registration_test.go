package config_test

import (
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ferry-matrix/ferry/config"
)

func TestRegistrationFromConfig(t *testing.T) {
	c, err := config.Parse(config.Example)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegistrationYAML(); err == nil || !strings.Contains(err.Error(), "openssl rand") {
		t.Fatalf("the example's placeholder tokens: %v", err)
	}
	c.Appservice.ASToken, c.Appservice.HSToken = "same", "same"
	if _, err := c.RegistrationYAML(); err == nil || !strings.Contains(err.Error(), "must differ") {
		t.Fatalf("equal tokens: %v", err)
	}
	c.Appservice.ASToken, c.Appservice.HSToken = "as-0123456789", "hs-9876543210"
	out, err := c.RegistrationYAML()
	if err != nil {
		t.Fatal(err)
	}
	var reg config.Registration
	if err := yaml.Unmarshal(out, &reg); err != nil {
		t.Fatal(err)
	}
	if reg.ID != "ferry" || reg.URL != c.Appservice.Address || reg.ASToken != "as-0123456789" || reg.HSToken != "hs-9876543210" ||
		reg.SenderLocalpart != "ferry" || reg.RateLimited || len(reg.Namespaces.Users) != 1 || !reg.Namespaces.Users[0].Exclusive {
		t.Fatalf("registration: %+v", reg)
	}
	re := regexp.MustCompile(reg.Namespaces.Users[0].Regex)
	for user, want := range map[string]bool{"@ferry:example.org": true, "@ferry:exampleXorg": false, "@ferry2:example.org": false, "@alice:example.org": false} {
		if re.MatchString(user) != want {
			t.Errorf("the bot namespace %s matches %s: %v", re, user, !want)
		}
	}
}
