package archive

// Record types of the m.* sections, format version 1. docs/FORMAT.md is the
// normative description; the CBOR keys here must match it. Fields whose value
// is JSON that the homeserver stored are byte strings holding the exact bytes.
//
// Compatibility rule within a major version: fields may be added (readers
// ignore keys they do not know), never renamed, retyped or removed.

// Server keys: m.server_keys/keys.N.cbor.
type ServerKey struct {
	ServerName string `cbor:"server_name"`
	KeyID      string `cbor:"key_id"`     // "ed25519:abc"
	PublicKey  string `cbor:"public_key"` // unpadded standard base64, as in /_matrix/key/v2
	// Kind is "own" (the current signing key), "own_old" (a retired key of
	// this server) or "remote" (a cached key of another server).
	Kind         string `cbor:"kind"`
	ValidUntilTS int64  `cbor:"valid_until_ts,omitempty"`
	ExpiredTS    int64  `cbor:"expired_ts,omitempty"`
	// PrivateKey is the 32-byte ed25519 seed. Sensitive.
	PrivateKey []byte `cbor:"private_key,omitempty"`
}

// User: m.users/users.N.cbor. One record per local account.
type User struct {
	UserID       string `cbor:"user_id"`
	CreatedTS    int64  `cbor:"created_ts,omitempty"`
	PasswordHash string `cbor:"password_hash,omitempty"` // sensitive
	Admin        bool   `cbor:"admin,omitempty"`
	Guest        bool   `cbor:"guest,omitempty"`
	Deactivated  bool   `cbor:"deactivated,omitempty"`
	// Erased: the user asked for GDPR erasure; importers must keep honouring it.
	Erased       bool         `cbor:"erased,omitempty"`
	ShadowBanned bool         `cbor:"shadow_banned,omitempty"`
	Locked       bool         `cbor:"locked,omitempty"`
	Suspended    bool         `cbor:"suspended,omitempty"`
	Approved     *bool        `cbor:"approved,omitempty"`
	UserType     string       `cbor:"user_type,omitempty"`
	AppserviceID string       `cbor:"appservice_id,omitempty"`
	DisplayName  string       `cbor:"displayname,omitempty"`
	AvatarURL    string       `cbor:"avatar_url,omitempty"`
	Threepids    []Threepid   `cbor:"threepids,omitempty"`
	ExternalIDs  []ExternalID `cbor:"external_ids,omitempty"`
}

type Threepid struct {
	Medium      string `cbor:"medium"`
	Address     string `cbor:"address"`
	ValidatedTS int64  `cbor:"validated_ts,omitempty"`
	AddedTS     int64  `cbor:"added_ts,omitempty"`
}

type ExternalID struct {
	AuthProvider string `cbor:"auth_provider"`
	ExternalID   string `cbor:"external_id"`
}

// Device: m.users/devices.N.cbor.
type Device struct {
	UserID      string `cbor:"user_id"`
	DeviceID    string `cbor:"device_id"`
	DisplayName string `cbor:"display_name,omitempty"`
	LastSeenTS  int64  `cbor:"last_seen_ts,omitempty"`
	LastSeenIP  string `cbor:"last_seen_ip,omitempty"`
	UserAgent   string `cbor:"user_agent,omitempty"`
	// AccessTokens are only present in migration exports. Sensitive.
	AccessTokens []AccessToken `cbor:"access_tokens,omitempty"`
}

type AccessToken struct {
	Token        string `cbor:"token"`
	ValidUntilTS int64  `cbor:"valid_until_ts,omitempty"`
}

// Pusher: m.users/pushers.N.cbor.
type Pusher struct {
	UserID            string `cbor:"user_id"`
	Kind              string `cbor:"kind"`
	AppID             string `cbor:"app_id"`
	PushKey           string `cbor:"pushkey"`
	AppDisplayName    string `cbor:"app_display_name,omitempty"`
	DeviceDisplayName string `cbor:"device_display_name,omitempty"`
	ProfileTag        string `cbor:"profile_tag,omitempty"`
	Lang              string `cbor:"lang,omitempty"`
	Data              []byte `cbor:"data,omitempty"` // JSON
	DeviceID          string `cbor:"device_id,omitempty"`
	Enabled           bool   `cbor:"enabled"`
}

// Filter: m.users/filters.N.cbor.
type Filter struct {
	UserID   string `cbor:"user_id"`
	FilterID string `cbor:"filter_id"`
	JSON     []byte `cbor:"json"`
}

// AccountData: m.account_data/account_data.N.cbor. RoomID is empty for
// global account data. Tags travel as room account data of type m.tag, push
// rules as global account data of type m.push_rules holding the effective rule
// set a client would see.
type AccountData struct {
	UserID  string `cbor:"user_id"`
	RoomID  string `cbor:"room_id,omitempty"`
	Type    string `cbor:"type"`
	Content []byte `cbor:"content"` // JSON
}

// E2EE key kinds, the Kind of an E2EEKey record.
const (
	KeyKindDevice       = "device"        // device keys JSON (/keys/upload device_keys)
	KeyKindCrossSigning = "cross_signing" // a master/self_signing/user_signing key JSON; Usage says which
	KeyKindSignature    = "signature"     // a signature by Signer's key KeyID over target's key
	KeyKindFallback     = "fallback"      // an unused or used fallback key
	KeyKindOneTime      = "one_time"      // a one-time key (only with the one_time_keys option)
)

// E2EEKey: m.e2ee/keys.N.cbor. Public key material; none of it is secret.
type E2EEKey struct {
	Kind     string `cbor:"kind"`
	UserID   string `cbor:"user_id"`
	DeviceID string `cbor:"device_id,omitempty"`
	KeyID    string `cbor:"key_id,omitempty"` // "signed_curve25519:AAAA", "ed25519:..."
	Usage    string `cbor:"usage,omitempty"`  // cross-signing usage
	JSON     []byte `cbor:"json,omitempty"`
	Used     bool   `cbor:"used,omitempty"` // fallback keys
	// For signatures: the signed key's owner and device (or cross-signing key id).
	TargetUserID   string `cbor:"target_user_id,omitempty"`
	TargetDeviceID string `cbor:"target_device_id,omitempty"`
	Signature      string `cbor:"signature,omitempty"`
}

// KeyBackupVersion: m.e2ee/backup_versions.N.cbor.
type KeyBackupVersion struct {
	UserID    string `cbor:"user_id"`
	Version   string `cbor:"version"`
	Algorithm string `cbor:"algorithm"`
	AuthData  []byte `cbor:"auth_data"` // JSON
	Etag      int64  `cbor:"etag,omitempty"`
	Deleted   bool   `cbor:"deleted,omitempty"`
}

// KeyBackupSession: m.e2ee/backup_sessions.N.cbor. SessionData is the
// client-encrypted session (the server cannot read it). Sensitive.
type KeyBackupSession struct {
	UserID            string `cbor:"user_id"`
	Version           string `cbor:"version"`
	RoomID            string `cbor:"room_id"`
	SessionID         string `cbor:"session_id"`
	FirstMessageIndex int64  `cbor:"first_message_index"`
	ForwardedCount    int64  `cbor:"forwarded_count"`
	IsVerified        bool   `cbor:"is_verified"`
	SessionData       []byte `cbor:"session_data"` // JSON
}

// Room: m.rooms/rooms.N.cbor.
type Room struct {
	RoomID  string `cbor:"room_id"`
	Version string `cbor:"version"`
	Creator string `cbor:"creator,omitempty"`
	// Published in the server's room directory.
	Public  bool     `cbor:"public,omitempty"`
	Aliases []string `cbor:"aliases,omitempty"` // local aliases pointing at the room
	// Forward extremities: the events with no successor; new events point at them.
	ForwardExtremities []string `cbor:"forward_extremities"`
	// Backward extremities: events referenced as prev_events but not held.
	BackwardExtremities []string `cbor:"backward_extremities,omitempty"`
	// CurrentState is the snapshot ID of the room's current state.
	CurrentState uint64 `cbor:"current_state"`
	// PartialState: the source had joined over federation with partial state
	// (MSC3706) and had not finished resyncing.
	PartialState bool `cbor:"partial_state,omitempty"`
	Blocked      bool `cbor:"blocked,omitempty"` // blocked by a server admin
}

// Membership: m.rooms/memberships.N.cbor, the current membership of each
// user in each room. It must agree with the room's current state.
type Membership struct {
	RoomID     string `cbor:"room_id"`
	UserID     string `cbor:"user_id"`
	Membership string `cbor:"membership"`
	EventID    string `cbor:"event_id"`
	Sender     string `cbor:"sender,omitempty"`
}

// Receipt: m.rooms/receipts.N.cbor.
type Receipt struct {
	RoomID   string `cbor:"room_id"`
	UserID   string `cbor:"user_id"`
	Type     string `cbor:"type"` // m.read, m.read.private, ...
	EventID  string `cbor:"event_id"`
	ThreadID string `cbor:"thread_id,omitempty"`
	TS       int64  `cbor:"ts,omitempty"`
	Data     []byte `cbor:"data,omitempty"` // JSON
}

// StateKey names a state slot.
type StateKey struct {
	Type     string `cbor:"type"`
	StateKey string `cbor:"state_key"`
}

// StateEntry fills a state slot with an event.
type StateEntry struct {
	Type     string `cbor:"type"`
	StateKey string `cbor:"state_key"`
	EventID  string `cbor:"event_id"`
}

// StateSnapshot: m.state/snapshots.N.cbor. A snapshot is its parent's state
// with Remove applied and then Set applied. IDs are local to the archive and
// start at 1; 0 means "no snapshot" (the state before a create event). A
// parent always appears earlier in the stream than its children, and a parent
// belongs to the same room.
type StateSnapshot struct {
	ID     uint64       `cbor:"id"`
	RoomID string       `cbor:"room_id"`
	Parent uint64       `cbor:"parent,omitempty"`
	Set    []StateEntry `cbor:"set,omitempty"`
	Remove []StateKey   `cbor:"remove,omitempty"`
}

// Event: m.events/events.N.cbor. Events of a room appear in topological
// order (an event after its prev_events and auth_events that the archive holds).
type Event struct {
	EventID string `cbor:"event_id"`
	RoomID  string `cbor:"room_id"`
	// JSON is the event exactly as the homeserver stored it (the federation
	// form, without unsigned), or its redacted form when Redacted is set.
	JSON []byte `cbor:"json"`
	// StateBefore is the snapshot ID of the room state before this event.
	// 0 only for the create event and for outliers.
	StateBefore uint64 `cbor:"state_before"`
	Outlier     bool   `cbor:"outlier,omitempty"`
	SoftFailed  bool   `cbor:"soft_failed,omitempty"`
	// Rejected holds the reason the source rejected the event; empty if accepted.
	Rejected string `cbor:"rejected,omitempty"`
	// Redacted: JSON is the redacted form; see the m.events/redactions record.
	Redacted bool `cbor:"redacted,omitempty"`
	// OriginalJSON is the unredacted event of a redacted one, only with the
	// redacted_originals option. Sensitive.
	OriginalJSON []byte `cbor:"original_json,omitempty"`
	// StreamOrdering is the source's local ordering, informational only.
	StreamOrdering int64 `cbor:"stream_ordering,omitempty"`
}

// Redaction: m.events/redactions.N.cbor.
type Redaction struct {
	EventID    string `cbor:"event_id"`    // the redacted event
	RedactedBy string `cbor:"redacted_by"` // the m.room.redaction event
	RoomID     string `cbor:"room_id"`
}

// Media: m.media/media.N.cbor. Path names the blob inside the archive
// holding the file; it is empty when the file was not exported (an Omission
// record says why).
type Media struct {
	Origin        string      `cbor:"origin"` // server name in the mxc:// URI
	MediaID       string      `cbor:"media_id"`
	ContentType   string      `cbor:"content_type,omitempty"`
	Size          int64       `cbor:"size"`
	SHA256        string      `cbor:"sha256,omitempty"` // hex, of the file
	UploadName    string      `cbor:"upload_name,omitempty"`
	UserID        string      `cbor:"user_id,omitempty"`
	CreatedTS     int64       `cbor:"created_ts,omitempty"`
	Quarantined   bool        `cbor:"quarantined,omitempty"`
	Authenticated bool        `cbor:"authenticated,omitempty"`
	Path          string      `cbor:"path,omitempty"`
	Thumbnails    []Thumbnail `cbor:"thumbnails,omitempty"`
}

type Thumbnail struct {
	Width       int    `cbor:"width"`
	Height      int    `cbor:"height"`
	Method      string `cbor:"method"`
	ContentType string `cbor:"content_type"`
	Size        int64  `cbor:"size"`
	SHA256      string `cbor:"sha256,omitempty"`
	Path        string `cbor:"path,omitempty"`
}

// Omission: m.omissions/omissions.N.cbor. The exporter's own account of what
// it left out and why, with a fidelity reason code, so that the fidelity
// report of an import covers losses on the source side too.
type Omission struct {
	Code   string `cbor:"code"`
	Item   string `cbor:"item"` // e.g. "m.e2ee/keys#one_time"
	ID     string `cbor:"id,omitempty"`
	Detail string `cbor:"detail,omitempty"`
}
