package container

// Bucket URL schemes archives can be read from and written to. gs:// and
// azblob:// come with the storage package.
import (
	_ "gocloud.dev/blob/fileblob" // file:///path
	_ "gocloud.dev/blob/memblob"  // mem:// (one process)
	_ "gocloud.dev/blob/s3blob"   // s3://bucket?endpoint=...&use_path_style=true&region=...
)
