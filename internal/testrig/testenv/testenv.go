// Package testenv starts the real services Ferry's tests run against, on
// 127.0.0.1 ports the tests choose, and stops them when the test ends.
// The binaries are built by scripts/test (from the Go module proxy, cached
// under $HOME/.cache/ferry) and passed in environment variables. When a
// binary is missing the test is skipped, unless FERRY_REQUIRE_SERVICES=1
// (as scripts/test sets), in which case it fails: CI never silently skips.
package testenv

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ferry-matrix/ferry/internal/dendriteproc"
)

// need returns the path in environment variable env, or skips/fails.
func need(t testing.TB, env, what string) string {
	t.Helper()
	p := os.Getenv(env)
	if p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s is not available: set %s (scripts/test builds it)", what, env)
	if os.Getenv("FERRY_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := dendriteproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// S3 is a running S3-compatible server (versitygw, posix backend).
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string
	SecretKey string
	Dir       string // the posix backend's root: one directory per bucket
}

// BucketURL is a gocloud.dev URL for bucket on this server.
func (s *S3) BucketURL(bucket string) string {
	return "s3://" + bucket + "?endpoint=" + s.Endpoint + "&use_path_style=true&region=us-east-1&disable_https=true"
}

// CreateBucket makes a bucket (a directory of the posix backend).
func (s *S3) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(s.Dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
}

// StartS3 starts versitygw for the test and sets the AWS credential
// environment variables the gocloud s3blob driver reads.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := need(t, "FERRY_VERSITYGW", "the versitygw S3 server")
	s := &S3{AccessKey: "ferrytestaccess", SecretKey: "ferrytestsecret0123456789", Dir: t.TempDir()}
	port := FreePort(t)
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", "127.0.0.1:"+strconv.Itoa(port), "posix", s.Dir)
	startServer(t, "versitygw", cmd, answers(s.Endpoint+"/"))
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	return s
}

// Untar unpacks a .tar.gz of regular files into dir (names are cleaned, so
// nothing lands outside dir).
func Untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		out, err := os.Create(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		out.Close()
		if err != nil {
			return err
		}
	}
}
