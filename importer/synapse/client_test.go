package synapse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/ferry-matrix/ferry/internal/testrig/testenv"
)

// request calls a client-server API path as the user with token, with
// body as JSON (nil: none), and returns the HTTP status and the answer.
func request(t *testing.T, s *testenv.Synapse, method, token, path string, body any) (int, []byte) {
	t.Helper()
	var in io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		in = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, s.URL+path, in)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// get fetches path and decodes a 200 answer into v; it returns the status.
func get(t *testing.T, s *testenv.Synapse, token, path string, v any) int {
	t.Helper()
	code, body := request(t, s, "GET", token, path, nil)
	if code == 200 && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	return code
}

// post sends body to path and decodes the answer into v; it returns the
// status.
func post(t *testing.T, s *testenv.Synapse, token, path string, body, v any) int {
	t.Helper()
	code, out := request(t, s, "POST", token, path, body)
	if v != nil {
		json.Unmarshal(out, v)
	}
	return code
}

// download fetches a media path and returns the status and the SHA-256
// (hex) of what was served.
func download(t *testing.T, s *testenv.Synapse, token, path string) (int, string) {
	t.Helper()
	code, body := request(t, s, "GET", token, path, nil)
	sum := sha256.Sum256(body)
	return code, hex.EncodeToString(sum[:])
}
