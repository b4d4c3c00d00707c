// Command ferry-dendrite-import writes data into a stopped Dendrite v0.15.2
// through Dendrite's own components, for Ferry's importer
// (importer/dendrite). It lives in its own module so that Dendrite's
// dependencies cannot clash with Ferry's.
//
// It boots Dendrite's components in-process from the target's dendrite.yaml
// (roomserver, sync API, user API, media API; no HTTP listener, federation
// disabled) and then reads one JSON request per line on stdin, answering
// each with one JSON line on stdout. Events go through the roomserver's
// input as if they had arrived over federation, so that the sync API and
// federation API build their own tables exactly as Dendrite would; nothing
// is sent to other servers. The protocol is described in docs/DENDRITE.md
// ("Import helper protocol"); Ferry and this command check its Version.
//
// Logs go to stderr; they never contain request bodies (password hashes and
// access tokens pass through here).
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/element-hq/dendrite/appservice"
	"github.com/element-hq/dendrite/federationapi"
	"github.com/element-hq/dendrite/internal/caching"
	"github.com/element-hq/dendrite/internal/httputil"
	"github.com/element-hq/dendrite/internal/sqlutil"
	"github.com/element-hq/dendrite/mediaapi/fileutils"
	mediastorage "github.com/element-hq/dendrite/mediaapi/storage"
	mediatypes "github.com/element-hq/dendrite/mediaapi/types"
	"github.com/element-hq/dendrite/roomserver"
	rsapi "github.com/element-hq/dendrite/roomserver/api"
	rstypes "github.com/element-hq/dendrite/roomserver/types"
	"github.com/element-hq/dendrite/setup"
	basepkg "github.com/element-hq/dendrite/setup/base"
	"github.com/element-hq/dendrite/setup/config"
	"github.com/element-hq/dendrite/setup/jetstream"
	"github.com/element-hq/dendrite/setup/process"
	userapiapi "github.com/element-hq/dendrite/userapi/api"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// Version is the protocol version; Ferry refuses a helper of another one.
const Version = 1

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

type Thumbnail struct {
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Method      string `json:"method"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	File        string `json:"file"`
}

type BackupSession struct {
	RoomID            string          `json:"room_id"`
	SessionID         string          `json:"session_id"`
	FirstMessageIndex int             `json:"first_message_index"`
	ForwardedCount    int             `json:"forwarded_count"`
	IsVerified        bool            `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// Response is one line on stdout per request.
type Response struct {
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

func main() {
	// Dendrite's packages register their own flags on the default set.
	fs := flag.NewFlagSet("ferry-dendrite-import", flag.ExitOnError)
	configPath := fs.String("config", "dendrite.yaml", "the target Dendrite's config file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here (for investigations)")
	fs.Parse(os.Args[1:])
	if *cpuProfile != "" {
		if f, err := os.Create(*cpuProfile); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	logrus.SetOutput(os.Stderr)
	logrus.SetLevel(logrus.WarnLevel)
	h, err := start(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-dendrite-import:", err)
		os.Exit(2)
	}
	err = h.serve(os.Stdin, os.Stdout)
	h.stop()
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "ferry-dendrite-import:", err)
		os.Exit(1)
	}
}

type helper struct {
	cfg     *config.Dendrite
	process *process.ProcessContext
	rs      rsapi.RoomserverInternalAPI
	users   userapiapi.UserInternalAPI
	media   mediastorage.Database
	js      nats.JetStreamContext
	userDB  dbw
	rsDB    *sql.DB // read only
	keyDB   dbw
	mediaDB dbw
	name    spec.ServerName
}

func start(configPath string) (*helper, error) {
	cfg, err := config.Load(configPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", configPath, err)
	}
	// Nothing the import does may reach another server.
	cfg.Global.DisableFederation = true
	errs := &config.ConfigErrors{}
	cfg.Verify(errs)
	if len(*errs) > 0 {
		return nil, fmt.Errorf("%s: %s", configPath, strings.Join(*errs, "; "))
	}
	if err := os.Chdir(filepath.Dir(configPath)); err != nil {
		return nil, err
	}
	processCtx := process.NewProcessContext()
	cm := sqlutil.NewConnectionManager(processCtx, cfg.Global.DatabaseOptions)
	routers := httputil.NewRouters()
	caches := caching.NewRistrettoCache(cfg.Global.Cache.EstimatedMaxSize, cfg.Global.Cache.MaxAge, caching.DisableMetrics)
	natsInstance := jetstream.NATSInstance{}
	federationClient := basepkg.CreateFederationClient(cfg, nil)
	httpClient := basepkg.CreateClient(cfg, nil)

	// What a killed import left queued in the roomserver's input is dropped:
	// the rerun sends everything again, in order, and stale queued events
	// would be processed before the ones that complete their history.
	js, _ := natsInstance.Prepare(processCtx, &cfg.Global.JetStream)
	if err := js.PurgeStream(cfg.Global.JetStream.Prefixed(jetstream.InputRoomEvent)); err != nil && !errors.Is(err, nats.ErrStreamNotFound) {
		return nil, fmt.Errorf("clearing the roomserver's input queue: %w", err)
	}
	rsAPI := roomserver.NewInternalAPI(processCtx, cfg, cm, &natsInstance, caches, caching.DisableMetrics)
	fsAPI := federationapi.NewInternalAPI(processCtx, cfg, cm, &natsInstance, federationClient, rsAPI, caches, nil, false)
	rsAPI.SetFederationAPI(fsAPI, fsAPI.KeyRing())
	userAPI := newUserAPI(processCtx, cfg, cm, &natsInstance, rsAPI, federationClient, fsAPI.IsBlacklistedOrBackingOff)
	asAPI := appservice.NewInternalAPI(processCtx, cfg, &natsInstance, userAPI, rsAPI)
	rsAPI.SetAppserviceAPI(asAPI)
	rsAPI.SetUserAPI(userAPI)
	monolith := setup.Monolith{Config: cfg, Client: httpClient, FedClient: federationClient, KeyRing: fsAPI.KeyRing(),
		AppserviceAPI: asAPI, FederationAPI: fsAPI, RoomserverAPI: rsAPI, UserAPI: userAPI}
	// Starts the sync API's and other components' consumers; the routes
	// are never served.
	monolith.AddAllPublicRoutes(processCtx, cfg, routers, cm, &natsInstance, caches, caching.DisableMetrics)

	media, err := mediastorage.NewMediaAPIDatasource(cm, &cfg.MediaAPI.Database)
	if err != nil {
		return nil, fmt.Errorf("media database: %w", err)
	}
	userDB, userW, err := cm.Connection(&cfg.UserAPI.AccountDatabase)
	if err != nil {
		return nil, fmt.Errorf("user database: %w", err)
	}
	rsDB, _, err := cm.Connection(&cfg.RoomServer.Database)
	if err != nil {
		return nil, fmt.Errorf("roomserver database: %w", err)
	}
	keyDB, keyW, err := cm.Connection(&cfg.KeyServer.Database)
	if err != nil {
		return nil, fmt.Errorf("key server database: %w", err)
	}
	mediaDB, mediaW, err := cm.Connection(&cfg.MediaAPI.Database)
	if err != nil {
		return nil, fmt.Errorf("media database: %w", err)
	}
	return &helper{cfg: cfg, keyDB: dbw{keyDB, keyW}, mediaDB: dbw{mediaDB, mediaW}, process: processCtx, rs: rsAPI, users: userAPI, media: media, js: js,
		userDB: dbw{userDB, userW}, rsDB: rsDB, name: cfg.Global.ServerName}, nil
}

func (h *helper) stop() {
	h.process.ShutdownDendrite()
	done := make(chan struct{})
	go func() { h.process.WaitForComponentsToFinish(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
	}
}

func (h *helper) serve(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	ctx := context.Background()
	for sc.Scan() {
		var req Request
		var res Response
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			res.Error = "bad request line: " + err.Error()
		} else if err := h.handle(ctx, &req, &res); err != nil {
			res.Error = fmt.Sprintf("%s: %v", req.Op, err)
		} else {
			res.OK = true
		}
		if err := enc.Encode(&res); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (h *helper) handle(ctx context.Context, req *Request, res *Response) error {
	switch req.Op {
	case "hello":
		res.Version, res.ServerName = Version, string(h.name)
		if err := h.userDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM userapi_accounts WHERE localpart <> '_server'").Scan(&res.Users); err != nil {
			return err
		}
		return h.rsDB.QueryRowContext(ctx, "SELECT COUNT(*) FROM roomserver_rooms").Scan(&res.Rooms)
	case "account":
		return h.account(ctx, req, res)
	case "profile":
		local, err := h.localpart(req.UserID)
		if err != nil {
			return err
		}
		if _, _, err := h.users.SetDisplayName(ctx, local, h.name, req.DisplayName); err != nil {
			return err
		}
		_, _, err = h.users.SetAvatarURL(ctx, local, h.name, req.AvatarURL)
		return err
	case "device":
		local, err := h.localpart(req.UserID)
		if err != nil {
			return err
		}
		var dres userapiapi.PerformDeviceCreationResponse
		if err := h.users.PerformDeviceCreation(ctx, &userapiapi.PerformDeviceCreationRequest{
			Localpart: local, ServerName: h.name, AccessToken: req.AccessToken, DeviceID: &req.DeviceID,
			DeviceDisplayName: &req.DisplayName, IPAddr: req.LastSeenIP, UserAgent: req.UserAgent, NoDeviceListUpdate: true,
		}, &dres); err != nil || req.TS == 0 {
			return err
		}
		_, err = h.userDB.ExecContext(ctx, "UPDATE userapi_devices SET last_seen_ts = $1 WHERE localpart = $2 AND server_name = $3 AND device_id = $4",
			req.TS, local, string(h.name), req.DeviceID)
		return err
	case "account_data":
		// Unchanged account data is left alone on a rerun (writing it again
		// would announce it to clients again).
		var have userapiapi.QueryAccountDataResponse
		if err := h.users.QueryAccountData(ctx, &userapiapi.QueryAccountDataRequest{UserID: req.UserID, RoomID: req.RoomID, DataType: req.Type}, &have); err == nil {
			cur := have.GlobalAccountData[req.Type]
			if req.RoomID != "" {
				cur = have.RoomAccountData[req.RoomID][req.Type]
			}
			if cur != nil && jsonEqual(cur, req.Content) {
				res.Skipped = true
				return nil
			}
		}
		var ares userapiapi.InputAccountDataResponse
		return h.users.InputAccountData(ctx, &userapiapi.InputAccountDataRequest{
			UserID: req.UserID, RoomID: req.RoomID, DataType: req.Type, AccountData: req.Content}, &ares)
	case "event":
		return h.event(ctx, req, res)
	case "alias":
		room, err := spec.NewRoomID(req.RoomID)
		if err != nil {
			return err
		}
		used, err := h.rs.SetRoomAlias(ctx, spec.SenderID(req.UserID), *room, req.Alias)
		res.Skipped = used
		return err
	case "publish":
		return h.rs.PerformPublish(ctx, &rsapi.PerformPublishRequest{RoomID: req.RoomID, Visibility: "public"})
	case "receipt":
		m := &nats.Msg{Subject: h.cfg.Global.JetStream.Prefixed(jetstream.OutputReceiptEvent), Header: nats.Header{}}
		m.Header.Set(jetstream.UserID, req.UserID)
		m.Header.Set(jetstream.RoomID, req.RoomID)
		m.Header.Set(jetstream.EventID, req.EventID)
		m.Header.Set("type", req.Type)
		m.Header.Set("timestamp", strconv.FormatInt(req.TS, 10))
		_, err := h.js.PublishMsg(m, nats.Context(ctx))
		return err
	case "media":
		return h.mediaFile(ctx, req, res)
	case "key_backup_version":
		return h.backupVersion(ctx, req, res)
	case "key_backup_sessions":
		return h.backupSessions(ctx, req, res)
	case "device_keys":
		var kres userapiapi.PerformUploadKeysResponse
		if err := h.users.PerformUploadKeys(ctx, &userapiapi.PerformUploadKeysRequest{UserID: req.UserID, DeviceID: req.DeviceID,
			DeviceKeys: []userapiapi.DeviceKeys{{UserID: req.UserID, DeviceID: req.DeviceID, DisplayName: req.DisplayName, KeyJSON: req.Content}}}, &kres); err != nil {
			return err
		}
		if kres.Error != nil {
			return fmt.Errorf("device keys of %s %s: %s", req.UserID, req.DeviceID, kres.Error.Err)
		}
		for _, kerr := range kres.KeyErrors {
			for device, e := range kerr {
				return fmt.Errorf("device keys of %s %s: %s", req.UserID, device, e.Err)
			}
		}
		return nil
	case "cross_signing_key":
		// Dendrite keeps the public key alone, by usage (keyserver KeyType).
		usage := map[string]int{"master": 1, "self_signing": 2, "user_signing": 3}[req.Usage]
		if usage == 0 {
			return fmt.Errorf("unknown cross-signing usage %q", req.Usage)
		}
		_, err := h.keyDB.ExecContext(ctx, "INSERT INTO keyserver_cross_signing_keys (user_id, key_type, key_data) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
			req.UserID, usage, req.PublicKey)
		return err
	case "cross_signing_signature":
		_, err := h.keyDB.ExecContext(ctx, `INSERT INTO keyserver_cross_signing_sigs (origin_user_id, origin_key_id, target_user_id, target_key_id, signature)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, req.UserID, req.KeyID, req.TargetUserID, req.TargetKeyID, req.Signature)
		return err
	case "drain":
		return h.drain(ctx)
	default:
		return fmt.Errorf("unknown op %q (this helper speaks protocol version %d)", req.Op, Version)
	}
}

func (h *helper) localpart(userID string) (string, error) {
	local, domain, err := gomatrixserverlib.SplitID('@', userID)
	if err != nil {
		return "", err
	}
	if domain != h.name {
		return "", fmt.Errorf("%s is not a user of %s", userID, h.name)
	}
	return local, nil
}

// account creates the account (or finds it on a rerun) and sets its
// password hash as the archive carries it: Dendrite checks bcrypt hashes,
// so old passwords keep working.
func (h *helper) account(ctx context.Context, req *Request, res *Response) error {
	local, err := h.localpart(req.UserID)
	if err != nil {
		return err
	}
	var ares userapiapi.PerformAccountCreationResponse
	if err := h.users.PerformAccountCreation(ctx, &userapiapi.PerformAccountCreationRequest{
		AccountType: userapiapi.AccountType(req.AccountType), Localpart: local, ServerName: h.name,
		AppServiceID: req.AppserviceID, OnConflict: userapiapi.ConflictUpdate,
	}, &ares); err != nil {
		return err
	}
	res.Skipped = !ares.AccountCreated
	created := req.TS
	if created == 0 {
		created = time.Now().UnixMilli()
	}
	_, err = h.userDB.ExecContext(ctx,
		"UPDATE userapi_accounts SET password_hash = $1, account_type = $2, is_deactivated = $3, created_ts = $4 WHERE localpart = $5 AND server_name = $6",
		req.PasswordHash, req.AccountType, req.Deactivated, created, local, string(h.name))
	return err
}

// event feeds one event to the roomserver: an outlier as an outlier, any
// other event as a new event with the archive's state before it.
func (h *helper) event(ctx context.Context, req *Request, res *Response) error {
	verImpl, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(req.RoomVersion))
	if err != nil {
		return err
	}
	pdu, err := verImpl.NewEventFromTrustedJSONWithEventID(req.EventID, req.Event, req.Redacted)
	if err != nil {
		return fmt.Errorf("event %s: %w", req.EventID, err)
	}
	if pdu.EventID() != req.EventID {
		return fmt.Errorf("event %s: Dendrite computes its ID as %s", req.EventID, pdu.EventID())
	}
	// Already there? An outlier counts once stored. A timeline event only
	// counts with its state: the roomserver stores an event and computes
	// its state in separate transactions, so an import killed in between
	// leaves it looking like an outlier, and it must go in again (Dendrite
	// then completes it). One that Dendrite rejected goes in again too.
	var snapshot int64
	var rejected bool
	err = h.rsDB.QueryRowContext(ctx, "SELECT state_snapshot_nid, is_rejected FROM roomserver_events WHERE event_id = $1", req.EventID).Scan(&snapshot, &rejected)
	switch {
	case err == sql.ErrNoRows:
	case err != nil:
		return err
	case req.Kind == "outlier" || (snapshot != 0 && !rejected):
		res.Skipped = true
		return nil
	}
	// Dendrite treats an event with an explicit state as a state rewrite (a
	// federated join: forward extremities reset, the sync API purges and
	// reloads the room, invites are re-issued). So the state is given only
	// where Dendrite cannot compute it: when a prev event is missing or an
	// outlier (a gap in the archive). Otherwise the answer asks for nothing
	// and Dendrite derives the state from the prev events, as it would.
	if req.Kind != "outlier" && !req.HasState && !req.Async && len(pdu.PrevEventIDs()) > 0 {
		for _, prev := range pdu.PrevEventIDs() {
			var snapshot int64
			err := h.rsDB.QueryRowContext(ctx, "SELECT state_snapshot_nid FROM roomserver_events WHERE event_id = $1", prev).Scan(&snapshot)
			if err == sql.ErrNoRows || (err == nil && snapshot == 0) {
				res.NeedState = true
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	in := rsapi.InputRoomEvent{Kind: rsapi.KindNew, Event: &rstypes.HeaderedEvent{PDU: pdu}, Origin: h.name,
		SendAsServer: rsapi.DoNotSendToOtherServers, HasState: req.HasState, StateEventIDs: req.State}
	if req.Kind == "outlier" {
		in.Kind, in.HasState, in.StateEventIDs = rsapi.KindOutlier, false, nil
	}
	var ires rsapi.InputRoomEventsResponse
	h.rs.InputRoomEvents(ctx, &rsapi.InputRoomEventsRequest{InputRoomEvents: []rsapi.InputRoomEvent{in}, VirtualHost: h.name,
		Asynchronous: req.Async && in.Kind != rsapi.KindOutlier}, &ires)
	if err := ires.Err(); err != nil {
		var notAllowed *gomatrixserverlib.NotAllowed
		if errors.As(err, &notAllowed) {
			res.Rejected = err.Error()
			return nil
		}
		return err
	}
	return nil
}

// mediaFile moves an uploaded file (and its thumbnails) into Dendrite's
// content-addressed media store and records its metadata.
func (h *helper) mediaFile(ctx context.Context, req *Request, res *Response) error {
	origin := spec.ServerName(req.Origin)
	if have, err := h.media.GetMediaMetadata(ctx, mediatypes.MediaID(req.MediaID), origin); err == nil && have != nil {
		res.Skipped = true
		return nil
	}
	sum, err := hex.DecodeString(req.SHA256)
	if err != nil || len(sum) != 32 {
		return fmt.Errorf("media %s: bad sha256 %q", req.MediaID, req.SHA256)
	}
	meta := &mediatypes.MediaMetadata{MediaID: mediatypes.MediaID(req.MediaID), Origin: origin,
		ContentType: mediatypes.ContentType(req.ContentType), FileSizeBytes: mediatypes.FileSizeBytes(req.Size),
		CreationTimestamp: spec.Timestamp(req.TS), UploadName: mediatypes.Filename(req.UploadName),
		Base64Hash: mediatypes.Base64Hash(base64.RawURLEncoding.EncodeToString(sum)), UserID: mediatypes.MatrixUserID(req.UserID)}
	final, err := fileutils.GetPathFromBase64Hash(meta.Base64Hash, h.cfg.MediaAPI.AbsBasePath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o770); err != nil {
		return err
	}
	if err := os.Rename(req.File, final); err != nil {
		return err
	}
	for _, t := range req.Thumbnails {
		path := filepath.Join(filepath.Dir(final), fmt.Sprintf("thumbnail-%vx%v-%v", t.Width, t.Height, t.Method))
		if err := os.Rename(t.File, path); err != nil {
			return err
		}
		tm := &mediatypes.ThumbnailMetadata{MediaMetadata: &mediatypes.MediaMetadata{MediaID: meta.MediaID, Origin: origin,
			ContentType: mediatypes.ContentType(t.ContentType), FileSizeBytes: mediatypes.FileSizeBytes(t.Size),
			CreationTimestamp: meta.CreationTimestamp},
			ThumbnailSize: mediatypes.ThumbnailSize{Width: t.Width, Height: t.Height, ResizeMethod: t.Method}}
		if err := h.media.StoreThumbnail(ctx, tm); err != nil {
			return err
		}
	}
	// Metadata last: its presence marks the media as done on a rerun.
	if err := h.media.StoreMediaMetadata(ctx, meta); err != nil {
		return err
	}
	// Dendrite stamps new media with the current time; keep the original.
	if req.TS != 0 {
		for _, table := range []string{"mediaapi_media_repository", "mediaapi_thumbnail"} {
			if _, err := h.mediaDB.ExecContext(ctx, "UPDATE "+table+" SET creation_ts = $1 WHERE media_id = $2 AND media_origin = $3",
				req.TS, req.MediaID, req.Origin); err != nil {
				return err
			}
		}
	}
	return nil
}

// backupVersion creates a backup version (and deletes it again if it was
// deleted), or finds it on a rerun. Dendrite numbers versions itself from
// one counter shared by all users, so versions created in the archive's
// numeric order on a fresh target get their old numbers back; the answer
// says which number Dendrite gave.
func (h *helper) backupVersion(ctx context.Context, req *Request, res *Response) error {
	local, err := h.localpart(req.UserID)
	if err != nil {
		return err
	}
	var deleted int
	err = h.userDB.QueryRowContext(ctx, "SELECT deleted FROM userapi_key_backup_versions WHERE (user_id = $1 OR user_id = $2) AND version = $3",
		req.UserID, local, req.Version).Scan(&deleted)
	if err == nil {
		res.Skipped, res.BackupVersion = true, req.Version
		return nil
	}
	if err != sql.ErrNoRows {
		return err
	}
	res.BackupVersion, err = h.users.PerformKeyBackup(ctx, &userapiapi.PerformKeyBackupRequest{UserID: req.UserID, AuthData: req.AuthData, Algorithm: req.Algorithm})
	if err != nil || !req.Deleted {
		return err
	}
	_, err = h.users.DeleteKeyBackup(ctx, req.UserID, res.BackupVersion)
	return err
}

// backupSessions uploads sessions into the user's current backup version.
func (h *helper) backupSessions(ctx context.Context, req *Request, res *Response) error {
	up := &userapiapi.PerformKeyBackupRequest{UserID: req.UserID, Version: req.Version}
	up.Keys.Rooms = map[string]struct {
		Sessions map[string]userapiapi.KeyBackupSession `json:"sessions"`
	}{}
	for _, s := range req.Sessions {
		room := up.Keys.Rooms[s.RoomID]
		if room.Sessions == nil {
			room.Sessions = map[string]userapiapi.KeyBackupSession{}
		}
		room.Sessions[s.SessionID] = userapiapi.KeyBackupSession{FirstMessageIndex: s.FirstMessageIndex,
			ForwardedCount: s.ForwardedCount, IsVerified: s.IsVerified, SessionData: s.SessionData}
		up.Keys.Rooms[s.RoomID] = room
	}
	_, err := h.users.UpdateBackupKeyAuthData(ctx, up)
	return err
}

// drain waits until every JetStream consumer (the sync API's, the user
// API's, ...) has processed everything published so far: the roomserver
// answers an input when the roomserver tables are written, and the sync
// API catches up from the output stream afterwards. On a large import
// the sync API trails the roomserver by tens of thousands of events, so
// drain waits as long as the backlog shrinks, and gives up only when it
// has not moved for stallLimit.
func (h *helper) drain(ctx context.Context) error {
	const stallLimit = 10 * time.Minute
	best, since := uint64(math.MaxUint64), time.Now()
	for {
		pending, where := uint64(0), ""
		for stream := range h.js.StreamNames(nats.Context(ctx)) {
			for info := range h.js.ConsumersInfo(stream, nats.Context(ctx)) {
				if n := info.NumPending + uint64(info.NumAckPending); n > 0 {
					pending += n
					where = stream + "/" + info.Name
				}
			}
		}
		if pending == 0 {
			return nil
		}
		if pending < best {
			best, since = pending, time.Now()
		}
		if time.Since(since) > stallLimit {
			return fmt.Errorf("Dendrite's consumers still have %d messages pending (e.g. %s) and made no progress for %s", pending, where, stallLimit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

// dbw is a component database with Dendrite's writer for it: on SQLite
// every write must go through the component's one exclusive writer, as
// Dendrite's own do, or they collide with "database is locked".
type dbw struct {
	db *sql.DB
	w  sqlutil.Writer
}

func (d dbw) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := d.w.Do(d.db, nil, func(txn *sql.Tx) error {
		var err error
		if txn != nil {
			res, err = txn.ExecContext(ctx, query, args...)
		} else {
			res, err = d.db.ExecContext(ctx, query, args...)
		}
		return err
	})
	return res, err
}

func (d dbw) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.db.QueryRowContext(ctx, query, args...)
}
