package dendrite

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
)

// synapseConfigFile is where a Synapse export keeps homeserver.yaml (as
// JSON, secrets handled).
const synapseConfigFile = "org.matrix.synapse/homeserver.json"

// Synapse settings that describe the old deployment (paths, listeners,
// database, logging, the secrets of its own cookies) rather than the
// server's behaviour: nothing to carry, nothing to report.
var synapseDeployment = map[string]bool{
	"pid_file": true, "listeners": true, "database": true, "log_config": true, "media_store_path": true,
	"signing_key_path": true, "report_stats": true, "macaroon_secret_key": true, "form_secret": true,
	"suppress_key_server_warning": true, "worker_app": true, "instance_map": true, "redis": true,
	"enable_metrics": true, "public_baseurl": true, "uploads_path": true, "old_signing_keys": true,
}

// SuggestConfig reads the Synapse config a Synapse export carries and
// returns the dendrite.yaml settings that correspond to it, and the list
// of settings Dendrite has no counterpart for. Secrets are never printed:
// where one is needed, the suggestion says where to copy it from. An
// archive without a Synapse config yields a short note.
func SuggestConfig(ctx context.Context, r *archive.Reader) (string, error) {
	var raw []byte
	err := r.Walk(ctx, func(f *archive.File) error {
		if f.Entry.Path == synapseConfigFile {
			raw = f.Data
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if raw == nil {
		return "No Synapse config in the archive (export with --synapse-config to get a suggested dendrite.yaml).\n", nil
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", fmt.Errorf("%s: %w", synapseConfigFile, err)
	}
	used := map[string]bool{}
	get := func(k string) (any, bool) { v, ok := cfg[k]; used[k] = true; return v, ok }
	var global, client, media, room, federation []string
	if v, ok := get("server_name"); ok {
		global = append(global, fmt.Sprintf("server_name: %v", v))
	}
	if v, ok := get("default_room_version"); ok {
		room = append(room, fmt.Sprintf("default_room_version: %q", fmt.Sprint(v)))
	}
	if v, ok := get("trusted_key_servers"); ok {
		federation = append(federation, keyPerspectives(v)...)
	}
	if v, ok := get("enable_registration"); ok {
		client = append(client, fmt.Sprintf("registration_disabled: %v", v != true))
	}
	if _, ok := get("registration_shared_secret"); ok {
		client = append(client, "registration_shared_secret: \"\"  # copy registration_shared_secret from homeserver.yaml")
	}
	if v, ok := get("allow_guest_access"); ok {
		client = append(client, fmt.Sprintf("guests_disabled: %v", v != true))
	}
	if v, ok := get("enable_registration_captcha"); ok {
		client = append(client, fmt.Sprintf("enable_registration_captcha: %v", v == true))
		for _, k := range []string{"recaptcha_public_key", "recaptcha_private_key"} {
			if _, ok := get(k); ok {
				client = append(client, strings.TrimSuffix(k, "_key")+"_key: \"\"  # copy "+k+" from homeserver.yaml")
			}
		}
	}
	if v, ok := get("max_upload_size"); ok {
		if n, err := parseSize(fmt.Sprint(v)); err == nil {
			media = append(media, fmt.Sprintf("max_file_size_bytes: %d", n))
		}
	}
	if v, ok := get("dynamic_thumbnails"); ok {
		media = append(media, fmt.Sprintf("dynamic_thumbnails: %v", v == true))
	}
	if v, ok := get("thumbnail_sizes"); ok {
		if sizes, ok := v.([]any); ok && len(sizes) > 0 {
			media = append(media, "thumbnail_sizes:")
			for _, s := range sizes {
				if m, ok := s.(map[string]any); ok {
					media = append(media, fmt.Sprintf("  - {width: %v, height: %v, method: %v}", m["width"], m["height"], m["method"]))
				}
			}
		}
	}
	var b strings.Builder
	b.WriteString("Suggested dendrite.yaml settings, from the Synapse config in the archive:\n")
	section := func(name string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s:\n", name)
		for _, l := range lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	section("global", global)
	section("client_api", client)
	section("media_api", media)
	section("room_server", room)
	section("federation_api", federation)
	var none []string
	for k := range cfg {
		if !used[k] && !synapseDeployment[k] {
			none = append(none, k)
		}
	}
	sort.Strings(none)
	if len(none) > 0 {
		fmt.Fprintf(&b, "Synapse settings with no counterpart here (decide by hand): %s\n", strings.Join(none, ", "))
	}
	return b.String(), nil
}

// matrixOrgKeys are matrix.org's notary keys, as Dendrite's generate-config
// writes them: Synapse knows them without a verify_keys entry.
var matrixOrgKeys = map[string]string{"ed25519:auto": "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw", "ed25519:a_RXGa": "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ"}

// keyPerspectives turns Synapse's trusted_key_servers into Dendrite's
// federation_api.key_perspectives (YAML lines).
func keyPerspectives(v any) []string {
	servers, _ := v.([]any)
	if len(servers) == 0 {
		return []string{"key_perspectives: []  # Synapse trusted no key server"}
	}
	lines := []string{"key_perspectives:"}
	for _, s := range servers {
		m, _ := s.(map[string]any)
		name := fmt.Sprint(m["server_name"])
		lines = append(lines, "  - server_name: "+name)
		keys, _ := m["verify_keys"].(map[string]any)
		if len(keys) == 0 && name == "matrix.org" {
			keys = map[string]any{}
			for id, k := range matrixOrgKeys {
				keys[id] = k
			}
		}
		if len(keys) == 0 {
			lines = append(lines, "    keys: []  # Synapse had no verify_keys for it: add its key_id and public_key, which Dendrite needs")
			continue
		}
		ids := make([]string, 0, len(keys))
		for id := range keys {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		lines = append(lines, "    keys:")
		for _, id := range ids {
			lines = append(lines, "      - key_id: "+id, fmt.Sprintf("        public_key: %v", keys[id]))
		}
	}
	return lines
}

// parseSize reads Synapse's sizes: "50M", "1G", "512K", or bytes.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	return int64(n * float64(mult)), nil
}
