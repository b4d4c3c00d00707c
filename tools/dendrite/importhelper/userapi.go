package main

import (
	fedsenderapi "github.com/element-hq/dendrite/federationapi/api"
	"github.com/element-hq/dendrite/federationapi/statistics"
	"github.com/element-hq/dendrite/internal/pushgateway"
	"github.com/element-hq/dendrite/internal/sqlutil"
	rsapi "github.com/element-hq/dendrite/roomserver/api"
	"github.com/element-hq/dendrite/setup/config"
	"github.com/element-hq/dendrite/setup/jetstream"
	"github.com/element-hq/dendrite/setup/process"
	"github.com/element-hq/dendrite/userapi/api"
	"github.com/element-hq/dendrite/userapi/consumers"
	"github.com/element-hq/dendrite/userapi/internal"
	"github.com/element-hq/dendrite/userapi/producers"
	"github.com/element-hq/dendrite/userapi/storage"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"
)

// newUserAPI is Dendrite v0.15.2's userapi.NewInternalAPI without the
// consumer of the roomserver's output (userapi/consumers/roomserver.go),
// which evaluates every member's push rules for every new event to count
// notifications and push them, and on a room upgrade copies the old room's
// push rules, tags and m.direct entry to the new room. For imported history
// all of it is wrong or done already: every old message would count as a
// notification stamped with the import's time, and the account data the
// archive carries already holds the copies (the consumer would append the
// upgraded room's push rule a second time). It is also the import's largest
// cost, growing with events times local members. The roomserver's output
// stream keeps a message only while an existing consumer has not
// acknowledged it (interest retention), so once dropUnrunConsumers has
// deleted the durable consumer a previous start of Dendrite left (JetStream
// on disk), the user API's consumer, created again when Dendrite next
// starts, does not replay the import: imported history counts as read.
func newUserAPI(
	processContext *process.ProcessContext, dendriteCfg *config.Dendrite, cm *sqlutil.Connections,
	natsInstance *jetstream.NATSInstance, rsAPI rsapi.UserRoomserverAPI, fedClient fedsenderapi.KeyserverFederationAPI,
	blacklistedOrBackingOffFn func(s spec.ServerName) (*statistics.ServerStatistics, error),
) *internal.UserInternalAPI {
	js, _ := natsInstance.Prepare(processContext, &dendriteCfg.Global.JetStream)
	pgClient := pushgateway.NewHTTPClient(dendriteCfg.UserAPI.PushGatewayDisableTLSValidation)
	db, err := storage.NewUserDatabase(processContext.Context(), cm, &dendriteCfg.UserAPI.AccountDatabase,
		dendriteCfg.Global.ServerName, dendriteCfg.UserAPI.BCryptCost, dendriteCfg.UserAPI.OpenIDTokenLifetimeMS,
		api.DefaultLoginTokenLifetime, dendriteCfg.UserAPI.Matrix.ServerNotices.LocalPart)
	if err != nil {
		logrus.WithError(err).Panicf("failed to connect to accounts db")
	}
	keyDB, err := storage.NewKeyDatabase(cm, &dendriteCfg.KeyServer.Database)
	if err != nil {
		logrus.WithError(err).Panicf("failed to connect to key db")
	}
	syncProducer := producers.NewSyncAPI(db, js,
		dendriteCfg.Global.JetStream.Prefixed(jetstream.OutputClientData),
		dendriteCfg.Global.JetStream.Prefixed(jetstream.OutputNotificationData))
	keyChangeProducer := &producers.KeyChange{Topic: dendriteCfg.Global.JetStream.Prefixed(jetstream.OutputKeyChangeEvent), JetStream: js, DB: keyDB}
	userAPI := &internal.UserInternalAPI{DB: db, KeyDatabase: keyDB, SyncProducer: syncProducer, KeyChangeProducer: keyChangeProducer,
		Config: &dendriteCfg.UserAPI, AppServices: dendriteCfg.Derived.ApplicationServices, RSAPI: rsAPI,
		DisableTLSValidation: dendriteCfg.UserAPI.PushGatewayDisableTLSValidation, PgClient: pgClient, FedClient: fedClient}
	updater := internal.NewDeviceListUpdater(processContext, keyDB, userAPI, keyChangeProducer, fedClient, dendriteCfg.UserAPI.WorkerCount,
		rsAPI, dendriteCfg.Global.ServerName, false, blacklistedOrBackingOffFn)
	userAPI.Updater = updater
	go func() {
		if err := updater.Start(); err != nil {
			logrus.WithError(err).Panicf("failed to start device list updater")
		}
	}()
	if err := consumers.NewDeviceListUpdateConsumer(processContext, &dendriteCfg.UserAPI, js, updater).Start(); err != nil {
		logrus.WithError(err).Panic("failed to start device list consumer")
	}
	if err := consumers.NewSigningKeyUpdateConsumer(processContext, &dendriteCfg.UserAPI, js, userAPI).Start(); err != nil {
		logrus.WithError(err).Panic("failed to start signing key consumer")
	}
	if err := consumers.NewOutputReceiptEventConsumer(processContext, &dendriteCfg.UserAPI, js, db, syncProducer, pgClient).Start(); err != nil {
		logrus.WithError(err).Panic("failed to start user API receipt consumer")
	}
	return userAPI
}
