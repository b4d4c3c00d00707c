package app

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// importLocations are where an import preview may read archives by URL:
// Ferry's own storage and storage.import_from. Anywhere else would let a
// chat command probe the bot's file system (file:///etc/...) or make
// Ferry's host call any address (s3://x?endpoint=http://169.254.169.254).
func (s *Service) importLocations() []string {
	return append([]string{s.cfg.StorageURL}, s.cfg.ImportFrom...)
}

// allowImport returns the URL to open for loc if loc lies in one of
// allowed, or an error saying where the bot may read from and how to allow
// more. A location lies in an allowed one when the scheme, the bucket and
// the parameters (endpoint, region, ...) are the same and its path is
// inside the allowed path; file paths are compared after resolving
// symbolic links and "..", so neither leads out.
func allowImport(loc string, allowed []string) (string, error) {
	u, err := url.Parse(loc)
	if err == nil && u.User == nil && u.Opaque == "" {
		for _, a := range allowed {
			if !strings.Contains(a, "://") {
				a = "file://" + a // storage.url may be a plain directory
			}
			au, err := url.Parse(a)
			if err != nil || au.Scheme != u.Scheme {
				continue
			}
			if u.Scheme == "file" {
				if u.Host == "" && u.RawQuery == "" && inDir(u.Path, au.Path) {
					return (&url.URL{Scheme: "file", Path: filepath.Clean(u.Path)}).String(), nil
				}
				continue
			}
			if u.Host == au.Host && sameQuery(u.Query(), au.Query()) && inPrefix(u.Path, au.Path) {
				return loc, nil
			}
		}
	}
	var where []string
	for _, a := range allowed {
		where = append(where, "`"+showLocation(a)+"`")
	}
	return "", fmt.Errorf("I don't read archives from `%s`: I read only from %s (Ferry's storage, and storage.import_from in its config; for a bucket, with the same parameters). "+
		"Give the archive's export ID, copy the archive there, or add its bucket URL to storage.import_from and restart me", loc, strings.Join(where, ", "))
}

// inDir: p is dir or inside it, after resolving "..", and symbolic links
// where the path exists.
func inDir(p, dir string) bool {
	if p == "" || dir == "" || !filepath.IsAbs(p) {
		return false
	}
	p, dir = resolve(p), resolve(dir)
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func resolve(p string) string {
	p = filepath.Clean(p)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	// A path that doesn't exist (yet): resolve its deepest existing parent.
	if parent := filepath.Dir(p); parent != p {
		return filepath.Join(resolve(parent), filepath.Base(p))
	}
	return p
}

// inPrefix: the object key of p is under the bucket prefix, with no "."
// or ".." segment a store might interpret.
func inPrefix(p, prefix string) bool {
	key, prefix := strings.Trim(p, "/"), strings.Trim(prefix, "/")
	if slices.ContainsFunc(strings.Split(key, "/"), func(s string) bool { return s == ".." || s == "." }) {
		return false
	}
	return prefix == "" || key == prefix || strings.HasPrefix(key, prefix+"/")
}

func sameQuery(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// showLocation is an allowed location without its parameters (which may
// name credentials' files or accounts).
func showLocation(a string) string {
	u, err := url.Parse(a)
	if err != nil || !strings.Contains(a, "://") {
		return a
	}
	shown := u.Scheme + "://" + u.Host + path.Clean("/"+u.Path)
	if u.RawQuery != "" {
		shown += "?…"
	}
	return shown
}
