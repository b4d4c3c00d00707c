package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"
)

func newKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen -o IDENTITY",
		Short: "Make an age identity to encrypt backups to, and print its recipient",
		Long: `Keygen writes a new age X25519 identity to IDENTITY (mode 0600; it never overwrites a file) and
prints its public recipient (age1...) on stdout. Export with --recipient age1...; keep IDENTITY
offline, apart from the backups, and open them with --identity IDENTITY. The file is the stock
age-keygen format: age and rage read it too. An SSH ed25519 or RSA key works as well, without keygen.`,
		Example: `  bot archive keygen -o /root/ferry-identity.txt
  bot export ... --recipient "$(grep -o 'age1.*' /root/ferry-identity.txt)" --to /backups/full.ferry`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("give -o IDENTITY: the file to write the new identity to")
			}
			return writeIdentity(cmd.OutOrStdout(), out)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "write the identity to `FILE` (created; never overwritten)")
	return cmd
}

// writeIdentity creates path with a new age identity, as age-keygen writes
// one, and prints its recipient on out.
func writeIdentity(out io.Writer, path string) error {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("write the identity: %s exists, and keygen never overwrites a file: choose another name", path)
	} else if err != nil {
		return fmt.Errorf("write the identity: %w", err)
	}
	_, werr := fmt.Fprintf(f, "# created: %s\n# public key: %s\n%s\n", time.Now().Format(time.RFC3339), id.Recipient(), id)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return fmt.Errorf("write the identity %s: %w", path, werr)
	}
	_, err = fmt.Fprintln(out, id.Recipient())
	return err
}
