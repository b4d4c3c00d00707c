// Package matrixadmin holds the few homeserver calls Ferry's tests and demo
// make as an administrator would: shared-secret registration (Synapse's
// admin API, which Dendrite implements too) and password login.
package matrixadmin

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Register creates a user through /_synapse/admin/v1/register with the
// homeserver's registration_shared_secret and returns its access token.
func Register(baseURL, secret, localpart, password string, admin bool) (string, error) {
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	resp, err := http.Get(baseURL + "/_synapse/admin/v1/register")
	if err != nil {
		return "", err
	}
	err = json.NewDecoder(resp.Body).Decode(&nonce)
	resp.Body.Close()
	if err != nil || nonce.Nonce == "" {
		return "", fmt.Errorf("register %s: no nonce from %s (HTTP %d): is shared-secret registration enabled?", localpart, baseURL, resp.StatusCode)
	}
	adminFlag := "notadmin"
	if admin {
		adminFlag = "admin"
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(strings.Join([]string{nonce.Nonce, localpart, password, adminFlag}, "\x00")))
	body, _ := json.Marshal(map[string]any{"nonce": nonce.Nonce, "username": localpart, "password": password, "admin": admin,
		"mac": hex.EncodeToString(mac.Sum(nil))})
	resp, err = http.Post(baseURL+"/_synapse/admin/v1/register", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out.AccessToken == "" {
		return "", fmt.Errorf("register %s: %d %s", localpart, resp.StatusCode, out.Error)
	}
	return out.AccessToken, nil
}

// Login logs a user in with a password and returns the access token, or
// the HTTP status when it fails.
func Login(baseURL, localpart, password string) (string, int, error) {
	body, _ := json.Marshal(map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": localpart}, "password": password})
	resp, err := http.Post(baseURL+"/_matrix/client/v3/login", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		return "", resp.StatusCode, fmt.Errorf("login %s: HTTP %d", localpart, resp.StatusCode)
	}
	return out.AccessToken, 200, nil
}
