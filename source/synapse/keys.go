package synapse

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/source"
)

type signingKey struct {
	keyID string // "ed25519:a_NMll"
	priv  ed25519.PrivateKey
	pub   ed25519.PublicKey
	// expiredTS is set for old keys (from homeserver.yaml's old_signing_keys).
	expiredTS int64
}

type signingKeys struct {
	serverName string
	current    []signingKey
	old        []signingKey
}

// loadSigningKeys reads Synapse's signing key file: lines of
// "<algorithm> <version> <unpadded base64 seed>".
func loadSigningKeys(path string) (*signingKeys, error) {
	ks := &signingKeys{}
	if path == "" {
		return ks, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("synapse: signing key: %w", err)
	}
	if name, ok := strings.CutSuffix(filepath.Base(path), ".signing.key"); ok {
		ks.serverName = name
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || f[0] != "ed25519" {
			return nil, fmt.Errorf("synapse: signing key %s line %d: expected \"ed25519 <version> <base64 key>\"", path, line)
		}
		seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(f[2], "="))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("synapse: signing key %s line %d: not a 32-byte base64 ed25519 seed", path, line)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		ks.current = append(ks.current, signingKey{keyID: "ed25519:" + f[1], priv: priv, pub: priv.Public().(ed25519.PublicKey)})
	}
	if len(ks.current) == 0 {
		return nil, fmt.Errorf("synapse: signing key %s holds no key", path)
	}
	return ks, nil
}

func (ks *signingKeys) addOld(old map[string]oldKey) error {
	ids := make([]string, 0, len(old))
	for id := range old {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		pub, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(old[id].Key, "="))
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("synapse: old_signing_keys %s: not a base64 ed25519 public key", id)
		}
		ks.old = append(ks.old, signingKey{keyID: id, pub: pub, expiredTS: old[id].ExpiredTS})
	}
	return nil
}

// serverKeysStream emits the server's own keys (private part only with
// the option), its old keys, and the cache of remote servers' keys.
func (s *Source) serverKeysStream(o source.Options) source.Stream {
	return source.Stream{
		Name: source.StreamServerKeys,
		Count: func(ctx context.Context) (int64, error) {
			n := int64(len(s.keys.current) + len(s.keys.old))
			if s.cols["server_keys_json"] != nil {
				var remote int64
				if err := s.tx.QueryRow(ctx, `SELECT count(*) FROM server_keys_json`).Scan(&remote); err != nil {
					return 0, err
				}
				n += remote
			}
			return n, nil
		},
		Run: func(ctx context.Context, _ []byte, sink source.Sink) error {
			for _, k := range s.keys.current {
				rec := &archive.ServerKey{ServerName: s.keys.serverName, KeyID: k.keyID, Kind: "own",
					PublicKey: base64.RawStdEncoding.EncodeToString(k.pub)}
				if o.PrivateServerKey {
					rec.PrivateKey = k.priv.Seed()
				}
				if err := sink.Record(archive.SectionServerKeys, rec); err != nil {
					return err
				}
			}
			if !o.PrivateServerKey && len(s.keys.current) > 0 {
				if err := sink.Omit(archive.Omission{Code: "excluded_by_default", Item: archive.SectionServerKeys + "#private_key",
					ID: s.keys.serverName, Detail: "the private signing key is exported only with the private_server_key option (full, encrypted exports)"}); err != nil {
					return err
				}
			}
			for _, k := range s.keys.old {
				if err := sink.Record(archive.SectionServerKeys, &archive.ServerKey{ServerName: s.keys.serverName, KeyID: k.keyID, Kind: "own_old",
					PublicKey: base64.RawStdEncoding.EncodeToString(k.pub), ExpiredTS: k.expiredTS}); err != nil {
					return err
				}
			}
			if s.cols["server_keys_json"] == nil {
				return nil
			}
			return s.remoteKeys(ctx, sink)
		},
	}
}

// remoteKeys reads Synapse's cache of other servers' keys (the
// /_matrix/key/v2 responses it stored), so remote events verify offline.
func (s *Source) remoteKeys(ctx context.Context, sink source.Sink) error {
	rows, err := s.tx.Query(ctx, `SELECT DISTINCT ON (server_name, key_id) server_name, key_id, ts_valid_until_ms, key_json
		FROM server_keys_json ORDER BY server_name, key_id, ts_valid_until_ms DESC`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var server, keyID string
		var validUntil int64
		var keyJSON []byte
		if err := rows.Scan(&server, &keyID, &validUntil, &keyJSON); err != nil {
			return err
		}
		var doc struct {
			VerifyKeys    map[string]struct{ Key string } `json:"verify_keys"`
			OldVerifyKeys map[string]struct {
				Key       string
				ExpiredTS int64 `json:"expired_ts"`
			} `json:"old_verify_keys"`
		}
		if err := json.Unmarshal(keyJSON, &doc); err != nil {
			if err := sink.Omit(archive.Omission{Code: "source_corrupt", Item: archive.SectionServerKeys, ID: server + " " + keyID, Detail: "cached key JSON does not parse"}); err != nil {
				return err
			}
			continue
		}
		rec := &archive.ServerKey{ServerName: server, KeyID: keyID, Kind: "remote", ValidUntilTS: validUntil}
		if k, ok := doc.VerifyKeys[keyID]; ok {
			rec.PublicKey = k.Key
		} else if k, ok := doc.OldVerifyKeys[keyID]; ok {
			rec.PublicKey, rec.ExpiredTS = k.Key, k.ExpiredTS
		} else {
			continue
		}
		if err := sink.Record(archive.SectionServerKeys, rec); err != nil {
			return err
		}
	}
	return rows.Err()
}

// homeserverConfig is what Ferry reads from homeserver.yaml; the whole
// document is also exported (secrets handled) to org.matrix.synapse/.
type homeserverConfig struct {
	ServerName         string            `yaml:"server_name"`
	DefaultRoomVersion string            `yaml:"default_room_version"`
	OldSigningKeys     map[string]oldKey `yaml:"old_signing_keys"`
	PasswordConfig     struct {
		Pepper string `yaml:"pepper"`
	} `yaml:"password_config"`
	raw map[string]any
}

type oldKey struct {
	Key       string `yaml:"key"`
	ExpiredTS int64  `yaml:"expired_ts"`
}

func loadHomeserverConfig(path string) (*homeserverConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("synapse: homeserver config: %w", err)
	}
	var c homeserverConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("synapse: homeserver config %s: %w", path, err)
	}
	if err := yaml.Unmarshal(data, &c.raw); err != nil {
		return nil, fmt.Errorf("synapse: homeserver config %s: %w", path, err)
	}
	return &c, nil
}

// secretConfigKeys are homeserver.yaml keys (dotted paths; "*" matches any
// list element) whose values are secrets.
var secretConfigKeys = []string{
	"registration_shared_secret", "macaroon_secret_key", "form_secret", "worker_replication_secret",
	"turn_shared_secret", "recaptcha_private_key", "password_config.pepper", "database.args.password",
	"email.smtp_pass", "redis.password", "oidc_providers.*.client_secret", "saml2_config.sp_config.key_file",
	"experimental_features.msc3861.client_secret", "experimental_features.msc3861.admin_token",
	"appservice.as_token", "signing_key", "media_storage_providers.*.config.secret_access_key",
}

// redactConfig replaces secrets in a config tree and returns the paths it
// found; with keep, the values stay (for an encrypted archive) and are
// only reported.
func redactConfig(v any, prefix string, keep bool, found *[]string) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if isSecretPath(p) && x != nil && x != "" {
				*found = append(*found, p)
				if !keep {
					t[k] = "[redacted: secret]"
				}
				continue
			}
			t[k] = redactConfig(x, p, keep, found)
		}
	case []any:
		for i, x := range t {
			t[i] = redactConfig(x, prefix+".*", keep, found)
		}
	}
	return v
}

func isSecretPath(p string) bool {
	for _, s := range secretConfigKeys {
		if s == p {
			return true
		}
	}
	last := p[strings.LastIndexByte(p, '.')+1:]
	return strings.Contains(last, "secret") || strings.Contains(last, "password") || strings.HasSuffix(last, "_token")
}
