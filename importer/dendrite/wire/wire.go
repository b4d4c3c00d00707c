// Package wire is the protocol between Ferry's Dendrite importer
// (importer/dendrite) and its import helper (tools/dendrite/importhelper):
// one JSON Request a line on the helper's stdin, one JSON Response a line
// on its stdout (docs/DENDRITE.md, "Import helper protocol").
//
// Both sides use these types, so a field cannot drift between them; Version
// changes when a field's meaning does, and Ferry refuses a helper of
// another version.
package wire

import "encoding/json"

// Version is the protocol version.
const Version = 2

// Request is one line on stdin. Op says which fields matter.
type Request struct {
	Op string `json:"op"`

	// hello
	ServerName string `json:"server_name,omitempty"`

	// account, profile, device, account_data, receipt, key_backup
	UserID       string `json:"user_id,omitempty"`
	PasswordHash string `json:"password_hash,omitempty"`
	AccountType  int    `json:"account_type,omitempty"`
	AppserviceID string `json:"appservice_id,omitempty"`
	Deactivated  bool   `json:"deactivated,omitempty"`
	DisplayName  string `json:"displayname,omitempty"`
	AvatarURL    string `json:"avatar_url,omitempty"`

	DeviceID    string `json:"device_id,omitempty"`
	AccessToken string `json:"access_token,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	UserAgent   string `json:"user_agent,omitempty"`

	RoomID  string          `json:"room_id,omitempty"`
	Type    string          `json:"type,omitempty"`
	Content json.RawMessage `json:"content,omitempty"`

	// event
	Kind        string          `json:"kind,omitempty"` // "outlier" or "new"
	RoomVersion string          `json:"room_version,omitempty"`
	EventID     string          `json:"event_id,omitempty"`
	Event       json.RawMessage `json:"event,omitempty"`
	Redacted    bool            `json:"redacted,omitempty"`
	HasState    bool            `json:"has_state,omitempty"`
	// Async queues the event (Dendrite processes its input in order per
	// room); the caller decides HasState itself then, and drains at the end.
	Async bool     `json:"async,omitempty"`
	State []string `json:"state,omitempty"`

	// alias
	Alias string `json:"alias,omitempty"`

	// receipt
	TS int64 `json:"ts,omitempty"`

	// media
	Origin      string      `json:"origin,omitempty"`
	MediaID     string      `json:"media_id,omitempty"`
	ContentType string      `json:"content_type,omitempty"`
	Size        int64       `json:"size,omitempty"`
	SHA256      string      `json:"sha256,omitempty"` // hex
	UploadName  string      `json:"upload_name,omitempty"`
	File        string      `json:"file,omitempty"` // a file for the helper to move into the media store
	Thumbnails  []Thumbnail `json:"thumbnails,omitempty"`

	// key_backup
	Version   string          `json:"version,omitempty"`
	Deleted   bool            `json:"deleted,omitempty"`
	Algorithm string          `json:"algorithm,omitempty"`
	AuthData  json.RawMessage `json:"auth_data,omitempty"`
	Sessions  []BackupSession `json:"sessions,omitempty"`

	// cross_signing_key, cross_signing_signature
	Usage        string `json:"usage,omitempty"`
	PublicKey    string `json:"public_key,omitempty"`
	KeyID        string `json:"key_id,omitempty"`
	TargetUserID string `json:"target_user_id,omitempty"`
	TargetKeyID  string `json:"target_key_id,omitempty"`
	Signature    string `json:"signature,omitempty"`
}

// Thumbnail is one of a media file's thumbnails (File: for the helper to
// move into the media store).
type Thumbnail struct {
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Method      string `json:"method"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	File        string `json:"file"`
}

// BackupSession is one room key of a key backup version.
type BackupSession struct {
	RoomID            string          `json:"room_id"`
	SessionID         string          `json:"session_id"`
	FirstMessageIndex int64           `json:"first_message_index"`
	ForwardedCount    int64           `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// Response is one line on stdout per request. Before it, a request may
// send lines that carry only Log: progress and notes for the person
// running the import.
type Response struct {
	Log     string `json:"log,omitempty"`
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Skipped bool   `json:"skipped,omitempty"` // already there (a rerun)
	// hello
	Version    int    `json:"version,omitempty"`
	ServerName string `json:"server_name,omitempty"`
	Users      int64  `json:"users,omitempty"`
	Rooms      int64  `json:"rooms,omitempty"`
	// event
	Rejected string `json:"rejected,omitempty"`
	// NeedState: send the event again with its state before (HasState).
	NeedState bool `json:"need_state,omitempty"`
	// key_backup_version
	BackupVersion string `json:"backup_version,omitempty"`
}
