package container

import (
	"fmt"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
)

// OpenDirBucket opens a local directory as a bucket. Objects are written to a
// temporary file beside their final name and renamed on Close, so a reader
// never sees half a part.
func OpenDirBucket(dir string, create bool) (*blob.Bucket, error) {
	b, err := fileblob.OpenBucket(dir, &fileblob.Options{CreateDir: create, NoTempDir: true, Metadata: fileblob.MetadataDontWrite})
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", dir, err)
	}
	return b, nil
}
