package testenv

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// startServer runs cmd (its output kept for a failure), waits until
// ready answers, and stops it when the test ends.
func startServer(t testing.TB, what string, cmd *exec.Cmd, ready func() bool) {
	t.Helper()
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", what, logs.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); !ready(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start:\n%s", what, logs.String())
		}
	}
}

func answers(url string) func() bool {
	return func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}
}

// StartGCS starts fake-gcs-server (a Google Cloud Storage emulator) with
// the given buckets on 127.0.0.1 and points gocloud's gcsblob driver at
// it (STORAGE_EMULATOR_HOST). gs://BUCKET URLs then reach it.
func StartGCS(t testing.TB, buckets ...string) {
	t.Helper()
	bin := need(t, "FERRY_FAKEGCS", "the fake-gcs-server Google Cloud Storage emulator")
	data := t.TempDir()
	for _, b := range buckets {
		if err := os.Mkdir(filepath.Join(data, b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := strconv.Itoa(FreePort(t))
	cmd := exec.Command(bin, "-scheme", "http", "-host", "127.0.0.1", "-port", port, "-backend", "filesystem",
		"-filesystem-root", t.TempDir(), "-data", data, "-public-host", "127.0.0.1:"+port, "-external-url", "http://127.0.0.1:"+port,
		"-log-level", "warn")
	startServer(t, "fake-gcs-server", cmd, answers("http://127.0.0.1:"+port+"/storage/v1/b"))
	t.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:"+port)
}

// Azurite's well-known development account (public, in Azure's docs).
const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azure is a running Azurite blob service.
type Azure struct {
	Endpoint string // 127.0.0.1:PORT
}

// BucketURL is a gocloud.dev URL for container on this server.
func (a *Azure) BucketURL(container, prefix string) string {
	return "azblob://" + container + "/" + prefix + "?protocol=http&domain=" + a.Endpoint + "&localemu=true"
}

// StartAzure starts Azurite's blob service (Microsoft's Azure Storage
// emulator, on Node.js) on 127.0.0.1, creates the containers and sets the
// account variables gocloud's azureblob driver reads.
func StartAzure(t testing.TB, containers ...string) *Azure {
	t.Helper()
	bin := need(t, "FERRY_AZURITE", "the Azurite Azure Storage emulator (azurite-blob)")
	port := strconv.Itoa(FreePort(t))
	cmd := exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", port, "--location", t.TempDir(), "--skipApiVersionCheck", "--silent")
	a := &Azure{Endpoint: "127.0.0.1:" + port}
	startServer(t, "azurite", cmd, answers("http://"+a.Endpoint+"/"))
	t.Setenv("AZURE_STORAGE_ACCOUNT", azuriteAccount)
	t.Setenv("AZURE_STORAGE_KEY", azuriteKey)
	for _, c := range containers {
		if err := a.createContainer(c); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// createContainer makes a blob container with the development account's
// shared key.
func (a *Azure) createContainer(name string) error {
	cred, err := azblob.NewSharedKeyCredential(azuriteAccount, azuriteKey)
	if err != nil {
		return err
	}
	c, err := azblob.NewClientWithSharedKeyCredential("http://"+a.Endpoint+"/"+azuriteAccount+"/", cred, nil)
	if err != nil {
		return err
	}
	_, err = c.CreateContainer(context.Background(), name, nil)
	return err
}
