package synapse

import (
	"context"
	"fmt"
	"strings"

	"github.com/ferry-matrix/ferry/archive"
)

// SuggestConfig returns the homeserver.yaml settings that follow from an
// archive restored into Synapse: what the archive says of the server
// (server_name, default room version) and what the restore needs Synapse
// to agree with. Archives carry no portable server settings beyond these
// yet (registration, media limits, federation lists stay to the admin),
// and the suggestion says so rather than guess. Old signing keys are in
// the import's ConfigAdvice.
func SuggestConfig(_ context.Context, r *archive.Reader) (string, error) {
	core := r.Core()
	var b strings.Builder
	b.WriteString("Suggested homeserver.yaml settings, from the archive:\n")
	fmt.Fprintf(&b, "server_name: %q\n", core.ServerName)
	if core.DefaultRoomVersion != "" {
		fmt.Fprintf(&b, "default_room_version: %q\n", core.DefaultRoomVersion)
	}
	b.WriteString("# signing_key_path: the file the restore wrote (listed above); keep it, other servers know this key\n")
	b.WriteString("# media_store_path: the media store the restore wrote into\n")
	fmt.Fprintf(&b, "The archive (from %s) carries no other server settings: set registration, media limits, federation and\n"+
		"appservice registrations (app_service_config_files) in homeserver.yaml as the old server had them.\n", r.Manifest().Export.Source.Implementation)
	return b.String(), nil
}
