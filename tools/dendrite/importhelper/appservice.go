package main

import (
	"context"
	"fmt"

	appserviceAPI "github.com/element-hq/dendrite/appservice/api"
	"github.com/element-hq/dendrite/appservice/query"
	"github.com/element-hq/dendrite/setup/config"
	userapi "github.com/element-hq/dendrite/userapi/api"
)

// newAppserviceAPI is Dendrite v0.15.2's appservice.NewInternalAPI without
// its consumer, which sends every new event an appservice is interested in
// to the appservice. Imported events are history the appservices (bridges)
// saw when it happened on the source server: sent again as new, a bridge
// would post old messages to its remote network a second time. And the
// appservices are usually stopped with Dendrite during an import, so the
// consumer would retry and hold the drain. dropUnrunConsumers deletes the
// consumers a previous start of Dendrite left, so that the stream keeps
// nothing for them; Dendrite creates them again when it next starts, and
// they deliver only new events from then on (DeliverNew).
//
// The appservices' sender accounts are created as Dendrite does on start.
func newAppserviceAPI(cfg *config.Dendrite, userAPI userapi.AppserviceUserAPI) (appserviceAPI.AppServiceInternalAPI, error) {
	for _, as := range cfg.Derived.ApplicationServices {
		var accRes userapi.PerformAccountCreationResponse
		if err := userAPI.PerformAccountCreation(context.Background(), &userapi.PerformAccountCreationRequest{
			AccountType: userapi.AccountTypeAppService, Localpart: as.SenderLocalpart, ServerName: cfg.Global.ServerName,
			AppServiceID: as.ID, OnConflict: userapi.ConflictUpdate,
		}, &accRes); err != nil {
			return nil, fmt.Errorf("the account of appservice %s: %w", as.ID, err)
		}
		var devRes userapi.PerformDeviceCreationResponse
		if err := userAPI.PerformDeviceCreation(context.Background(), &userapi.PerformDeviceCreationRequest{
			Localpart: as.SenderLocalpart, ServerName: cfg.Global.ServerName, AccessToken: as.ASToken,
			DeviceID: &as.SenderLocalpart, DeviceDisplayName: &as.SenderLocalpart, NoDeviceListUpdate: true,
		}, &devRes); err != nil {
			return nil, fmt.Errorf("the device of appservice %s: %w", as.ID, err)
		}
	}
	return &query.AppServiceQueryAPI{Cfg: &cfg.AppServiceAPI, ProtocolCache: map[string]appserviceAPI.ASProtocolResponse{}}, nil
}
