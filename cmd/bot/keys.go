package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"filippo.io/age"
	"github.com/spf13/pflag"

	"github.com/ferry-matrix/ferry/archive"
	"github.com/ferry-matrix/ferry/archive/container"
	"github.com/ferry-matrix/ferry/archive/keywrap"
)

// keyFlags are the options that open an encrypted archive.
type keyFlags struct {
	keyFile, identity, passphraseEnv string
}

func (k *keyFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&k.keyFile, "key-file", "", "`FILE` holding the archive's wrapped key (key.age; FILE.ferry.key.age beside a packed FILE.ferry is found without it) or a key line from bot archive key")
	fs.StringVar(&k.identity, "identity", "", "age identity `FILE` (AGE-SECRET-KEY-1...) or SSH private key that opens the wrapped key")
	fs.StringVar(&k.passphraseEnv, "passphrase-env", "", "name of the environment variable (`VAR`) holding the passphrase that opens the wrapped key")
}

func (k *keyFlags) options() (archive.OpenOptions, error) {
	var o archive.OpenOptions
	if k.keyFile != "" {
		data, err := os.ReadFile(k.keyFile)
		if err != nil {
			return o, fmt.Errorf("read the key file (--key-file): %w", err)
		}
		switch keywrap.Classify(data) {
		case keywrap.KindIdentity:
			return o, fmt.Errorf("--key-file %s holds an age or SSH identity (a secret key), not an archive's key file: "+
				"pass it as --identity %s, and leave --key-file out when the key file (ARCHIVE.key.age) lies beside the archive, or name that file with --key-file",
				k.keyFile, k.keyFile)
		case keywrap.KindUnknown:
			return o, fmt.Errorf("--key-file %s is not an archive key: expected the wrapped key that came with the archive (key.age, or FILE.ferry.key.age beside a packed FILE.ferry) "+
				"or a key line as `bot archive key` prints it (ferry-archive-key-v1 ...). Check that you named the right file", k.keyFile)
		}
		o.KeyFile = data
	}
	if k.identity != "" {
		data, err := os.ReadFile(k.identity)
		if err != nil {
			return o, fmt.Errorf("read the identity (--identity): %w", err)
		}
		if kind := keywrap.Classify(data); kind == keywrap.KindWrapped || kind == keywrap.KindKeyLine {
			return o, fmt.Errorf("--identity %s is an archive's key file, not an identity: pass it as --key-file %s, and as --identity the age or SSH private key the archive was encrypted to",
				k.identity, k.identity)
		}
		ids, err := keywrap.ParseIdentities(data)
		if err != nil {
			return o, fmt.Errorf("--identity %s: %w (expected an age identity file, AGE-SECRET-KEY-1..., or an unencrypted SSH private key)", k.identity, err)
		}
		o.Identities = append(o.Identities, ids...)
	}
	if k.passphraseEnv != "" {
		p := os.Getenv(k.passphraseEnv)
		if p == "" {
			return o, fmt.Errorf("environment variable %s is empty: set it to the archive's passphrase (--passphrase-env names the variable, not the passphrase)", k.passphraseEnv)
		}
		id, err := keywrap.PassphraseIdentity(p)
		if err != nil {
			return o, err
		}
		o.Identities = append(o.Identities, []age.Identity{id}...)
	}
	return o, nil
}

// open opens the archive at loc with the key options. A key problem is
// explained in terms of the options: which one is wrong and what to give
// instead.
func (k *keyFlags) open(ctx context.Context, loc string) (*archive.Reader, error) {
	opts, err := k.options()
	if err != nil {
		return nil, err
	}
	r, err := archive.OpenLocation(ctx, loc, opts)
	if err != nil {
		return nil, k.explain(loc, err)
	}
	return r, nil
}

// explain rewrites an error of opening loc that is about its key.
func (k *keyFlags) explain(loc string, err error) error {
	keyFile := k.keyFile
	if keyFile == "" {
		keyFile = "the key file"
		if besideKeyFile(loc) != "" {
			keyFile = besideKeyFile(loc)
		}
	}
	var noID *keywrap.NoIdentityError
	switch {
	case errors.As(err, &noID) && noID.Passphrase && noID.GivenPassphrase:
		return fmt.Errorf("the passphrase in $%s does not open %s: wrong passphrase. Set %s to the passphrase the export was made with", k.passphraseEnv, keyFile, k.passphraseEnv)
	case errors.As(err, &noID) && noID.Passphrase:
		return fmt.Errorf("%s is wrapped to a passphrase, and the identity %s is not one: pass --passphrase-env VAR, VAR holding the passphrase the export was made with", keyFile, k.identity)
	case errors.As(err, &noID) && noID.GivenIdentities:
		return fmt.Errorf("the identity %s does not open %s: the key is wrapped to %s. Use the identity whose public key (age1... or ssh-...) the export was encrypted to",
			k.identity, keyFile, plural(int64(noID.Recipients), "other age/SSH recipient"))
	case errors.As(err, &noID):
		return fmt.Errorf("%s is wrapped to %s, not to a passphrase: pass --identity FILE, the age or SSH private key whose public key the export was encrypted to",
			keyFile, plural(int64(noID.Recipients), "age/SSH recipient"))
	case errors.Is(err, keywrap.ErrWrongArchive):
		return fmt.Errorf("%s is the key of another archive (%w): give the key file that came with %s", keyFile, err, loc)
	case errors.Is(err, keywrap.ErrNotKeyFile):
		return fmt.Errorf("%s is not an archive key (%w): give the key file that came with %s with --key-file", keyFile, err, loc)
	case errors.Is(err, os.ErrNotExist) && k.keyFile == "" && besideKeyFile(loc) != "":
		return fmt.Errorf("%s is a packed archive whose key file is not beside it (looked for %s): pass the key file that came with it (the .key.age download) with --key-file FILE", loc, besideKeyFile(loc))
	case errors.Is(err, container.ErrNeedKey) && k.given() == "":
		return fmt.Errorf("%s is encrypted and no key was given: pass --identity FILE (the age or SSH identity the export was encrypted to; "+
			"a packed archive's key file, FILE.ferry.key.age, is found beside it or named with --key-file), --key-file FILE with a key line, or --passphrase-env VAR", loc)
	case errors.Is(err, container.ErrNeedKey) && k.keyFile != "":
		return fmt.Errorf("--key-file %s is a wrapped key (key.age): it opens with the identity or passphrase it was wrapped to. Add --identity FILE or --passphrase-env VAR", k.keyFile)
	}
	return err
}

// besideKeyFile is where the key file of a packed archive in a local file
// lies ("" when loc is not a local file).
func besideKeyFile(loc string) string {
	path := strings.TrimPrefix(loc, "file://")
	if strings.Contains(path, "://") {
		return ""
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return ""
	}
	return path + container.PackedKeySuffix
}

// given names the key options given, for messages ("" when none was).
func (k *keyFlags) given() string {
	var flags []string
	for _, f := range []struct{ flag, value string }{{"--key-file", k.keyFile}, {"--identity", k.identity}, {"--passphrase-env", k.passphraseEnv}} {
		if f.value != "" {
			flags = append(flags, f.flag)
		}
	}
	return strings.Join(flags, ", ")
}
