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
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

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
	"github.com/ferry-matrix/ferry/importer/dendrite/wire"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
)

// The protocol's types live in one module both sides require
// (importer/dendrite/wire).
type (
	Request       = wire.Request
	Response      = wire.Response
	Thumbnail     = wire.Thumbnail
	BackupSession = wire.BackupSession
)

// Version is the protocol version; Ferry refuses a helper of another one.
const Version = wire.Version

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
	// say sends a Log line before the current request's answer.
	say func(string)
	// notes are said with the answer to hello.
	notes []string
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
	notes, err := dropUnrunConsumers(js, &cfg.Global.JetStream)
	if err != nil {
		return nil, err
	}
	rsAPI := roomserver.NewInternalAPI(processCtx, cfg, cm, &natsInstance, caches, caching.DisableMetrics)
	fsAPI := federationapi.NewInternalAPI(processCtx, cfg, cm, &natsInstance, federationClient, rsAPI, caches, nil, false)
	rsAPI.SetFederationAPI(fsAPI, fsAPI.KeyRing())
	userAPI := newUserAPI(processCtx, cfg, cm, &natsInstance, rsAPI, federationClient, fsAPI.IsBlacklistedOrBackingOff)
	asAPI, err := newAppserviceAPI(cfg, userAPI)
	if err != nil {
		return nil, err
	}
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
		userDB: dbw{userDB, userW}, rsDB: rsDB, name: cfg.Global.ServerName, notes: notes, say: func(string) {}}, nil
}

// dropUnrunConsumers deletes the durable JetStream consumers of the
// components this helper does not run: the user API's consumer of the
// roomserver's output (see newUserAPI for why it does not run) and the
// appservices' consumers (see newAppserviceAPI).
//
// With JetStream on disk (Dendrite's default, in_memory: false) a consumer
// outlives the Dendrite that created it, and Dendrite's streams keep every
// message until each of their consumers has acknowledged it (interest
// retention): the import's output would be kept for readers that never
// come in this process, and a drain would wait on them. Deleted, they get
// nothing kept; Dendrite creates them again when it next starts, and they
// read only what the streams still hold: nothing of the import once it has
// drained.
//
// Messages pending for them from before the import (a Dendrite stopped
// before these components caught up) are dropped with them, and said.
func dropUnrunConsumers(js nats.JetStreamContext, cfg *config.JetStream) ([]string, error) {
	userAPI := cfg.Durable("UserAPIRoomServerConsumer")
	unrun := []struct {
		stream, what string
		names        func(stream string) []string
	}{
		// Dendrite's pull consumer, and its push consumer of before v0.13.
		{jetstream.OutputRoomEvent, "push notification counts", func(string) []string { return []string{userAPI + "Pull", userAPI} }},
		// Whatever appservices Dendrite knew, the current config's or not.
		{jetstream.OutputAppserviceEvent, "events sent to appservices", func(stream string) []string {
			var names []string
			for name := range js.ConsumerNames(stream) {
				names = append(names, name)
			}
			return names
		}},
	}
	var notes []string
	for _, u := range unrun {
		stream := cfg.Prefixed(u.stream)
		for _, name := range u.names(stream) {
			info, err := js.ConsumerInfo(stream, name)
			if errors.Is(err, nats.ErrConsumerNotFound) || errors.Is(err, nats.ErrStreamNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("reading Dendrite's JetStream consumer %s: %w", name, err)
			}
			if err := js.DeleteConsumer(stream, name); err != nil && !errors.Is(err, nats.ErrConsumerNotFound) {
				return nil, fmt.Errorf("deleting Dendrite's JetStream consumer %s of %s (the import does not run it, and the stream would keep the import's messages for it): %w", name, stream, err)
			}
			if n := info.NumPending + uint64(info.NumAckPending); n > 0 {
				notes = append(notes, fmt.Sprintf("Dendrite had %d messages from before the import not yet read by its JetStream consumer %s (%s); "+
					"the import does not run it, so they are dropped with it", n, name, u.what))
			}
		}
	}
	return notes, nil
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
	h.say = func(line string) {
		enc.Encode(&Response{Log: line})
		w.Flush()
	}
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
		for _, n := range h.notes {
			h.say(n)
		}
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
		return h.drain(ctx, defaultDrainLimits)
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
	// Already there? An outlier counts once stored. A timeline event counts
	// only once the roomserver has finished it, which it marks with
	// sent_to_output in the transaction that also moves the room's forward
	// extremities and current state and hands the event to the sync API.
	// It stores the event, then its state before, then does that, in three
	// transactions: an import killed in between leaves an event with a
	// state but not in the room's DAG nor in any timeline. It must go in
	// again (Dendrite then completes it: it skips what is done). One that
	// Dendrite rejected or soft-failed goes in again too.
	var snapshot int64
	var rejected, sent bool
	err = h.rsDB.QueryRowContext(ctx, "SELECT state_snapshot_nid, is_rejected, sent_to_output FROM roomserver_events WHERE event_id = $1", req.EventID).Scan(&snapshot, &rejected, &sent)
	switch {
	case err == sql.ErrNoRows:
	case err != nil:
		return err
	case req.Kind == "outlier" || (snapshot != 0 && !rejected && sent):
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
		room.Sessions[s.SessionID] = userapiapi.KeyBackupSession{FirstMessageIndex: int(s.FirstMessageIndex),
			ForwardedCount: int(s.ForwardedCount), IsVerified: s.IsVerified, SessionData: s.SessionData}
		up.Keys.Rooms[s.RoomID] = room
	}
	_, err := h.users.UpdateBackupKeyAuthData(ctx, up)
	return err
}

// drainLimits bound a drain. A consumer that has messages but neither
// pulls nor holds any for Idle has nobody behind it in this process:
// waiting cannot help. One that holds messages without finishing any for
// Busy is stuck. A consumer that moves (a message delivered or
// acknowledged) is waited for as long as it takes: on a large import the
// sync API trails the roomserver by tens of thousands of events.
type drainLimits struct {
	Idle, Busy, Progress time.Duration
	Poll                 time.Duration
}

var defaultDrainLimits = drainLimits{Idle: 5 * time.Second, Busy: 60 * time.Second, Progress: 10 * time.Second, Poll: 200 * time.Millisecond}

// consumerWatch is what drain remembers of one consumer.
type consumerWatch struct {
	delivered, acked, pending uint64
	moved                     time.Time // when one of them last changed
	idle                      time.Time // since when nothing was pulled or in flight (zero: busy)
	reported                  uint64    // pending at the last progress line
}

// drain waits until every JetStream consumer (the sync API's, the
// federation API's, the roomserver's per-room input, ...) has processed
// everything published so far: the roomserver answers an input when the
// roomserver tables are written, and the other components catch up from
// its output stream afterwards. It reports progress every lim.Progress,
// and fails within seconds, naming the consumer, when one cannot progress.
func (h *helper) drain(ctx context.Context, lim drainLimits) error {
	watch := map[string]*consumerWatch{}
	started, lastReport := time.Now(), time.Now()
	for {
		now := time.Now()
		var total uint64
		var busy []string
		for stream := range h.js.StreamNames(nats.Context(ctx)) {
			for info := range h.js.ConsumersInfo(stream, nats.Context(ctx)) {
				key := stream + "/" + info.Name
				n := info.NumPending + uint64(info.NumAckPending)
				if n == 0 {
					delete(watch, key)
					continue
				}
				total += n
				w := watch[key]
				if w == nil {
					w = &consumerWatch{moved: now, reported: n}
					watch[key] = w
				}
				if info.Delivered.Stream != w.delivered || info.AckFloor.Stream != w.acked || n < w.pending {
					w.moved = now
				}
				w.delivered, w.acked, w.pending = info.Delivered.Stream, info.AckFloor.Stream, n
				// A pull consumer that a component runs always has a pull
				// request waiting or a message in flight.
				if info.Config.DeliverSubject == "" && info.NumWaiting == 0 && info.NumAckPending == 0 {
					if w.idle.IsZero() {
						w.idle = now
					}
				} else {
					w.idle = time.Time{}
				}
				stalled := now.Sub(w.moved)
				switch {
				case !w.idle.IsZero() && now.Sub(w.idle) >= lim.Idle && stalled >= lim.Idle:
					return fmt.Errorf("Dendrite's JetStream consumer %s (stream %s) has %d messages pending and nothing in this import reads them (no progress for %s): "+
						"it belongs to a component the import helper does not run, and the stream keeps its messages until it reads them. "+
						"Start Dendrite once so that this component catches up, stop it, and run the import again: it resumes where it stopped",
						info.Name, stream, n, stalled.Round(time.Second))
				case stalled >= lim.Busy:
					return fmt.Errorf("Dendrite's JetStream consumer %s (stream %s) has %d messages pending and finished none for %s (%d in progress): "+
						"the component is stuck. Run the import again: it resumes where it stopped; if it sticks again, start Dendrite on the target and read its log for this component",
						info.Name, stream, n, stalled.Round(time.Second), info.NumAckPending)
				}
				if now.Sub(lastReport) >= lim.Progress {
					busy = append(busy, fmt.Sprintf("%s %d (%d done in %s)", info.Name, n, int64(w.reported)-int64(n), now.Sub(lastReport).Round(time.Second)))
					w.reported = n
				}
			}
		}
		if total == 0 {
			return nil
		}
		if len(busy) > 0 {
			slices.Sort(busy)
			h.say(fmt.Sprintf("waiting for Dendrite's components (%s so far): %d messages pending: %s",
				now.Sub(started).Round(time.Second), total, strings.Join(busy, ", ")))
			lastReport = now
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lim.Poll):
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
