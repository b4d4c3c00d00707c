package commands

import (
	"context"

	"github.com/ferry-matrix/ferry/app"
)

// Service is what the chat commands need of Ferry's application layer
// (app.Service): the same verbs the HTTP API calls, which write their own
// audit entries. The handlers' tests (through the bot) use a fake.
type Service interface {
	Submit(ctx context.Context, r app.ExportRequest) (*app.View, error)
	PersonalExport(ctx context.Context, id, user string) (*app.Personal, error)
	Get(ctx context.Context, id string) (*app.View, error)
	List(ctx context.Context, kind app.Kind, limit int) ([]*app.View, error)
	Cancel(ctx context.Context, id string, by app.Actor) (*app.View, error)
	Delete(ctx context.Context, id string, by app.Actor) (*app.View, error)
	CheckStored(ctx context.Context, id string, by app.Actor) (*app.StoredArchive, error)
	ChecksContents() bool
	Verify(ctx context.Context, id, export string, by app.Actor) (*app.View, error)
	Preview(ctx context.Context, r app.PreviewRequest) (*app.Preview, error)
	AddSchedule(ctx context.Context, r app.ScheduleRequest) (app.Schedule, error)
	RemoveSchedule(ctx context.Context, name string, by app.Actor) error
	Schedules(ctx context.Context) ([]app.ScheduleView, error)
	DownloadLinks(ctx context.Context, v *app.View) (*app.Links, error)
	SaveFollow(ctx context.Context, id, state string) error
	Follows(ctx context.Context) (map[string]string, error)
	Audit(ctx context.Context, e app.AuditEntry) error
	IssueLogin(ctx context.Context, user, role string, by app.Actor) (string, error)
}
