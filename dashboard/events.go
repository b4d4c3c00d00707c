package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/internal/human"
)

// item is one job's live state as the page's script shows it: the
// texts are made here so that the script only places them.
type item struct {
	ID       string  `json:"id"`
	Status   string  `json:"status"`
	Running  bool    `json:"running"`
	Percent  float64 `json:"percent"`
	Stream   string  `json:"stream"`
	Counts   string  `json:"counts"`
	Bytes    string  `json:"bytes"`
	ETA      string  `json:"eta"`
	Size     string  `json:"size"`
	Duration string  `json:"duration"`
	// Streams are an export's streams, each with its records and state.
	Streams []streamText `json:"streams,omitempty"`
}

// streamText is one stream of an export in words.
type streamText struct {
	Name   string `json:"name"`
	Counts string `json:"counts"`
	State  string `json:"state"` // done, running, waiting
}

// progressText is a job's progress in words, for the page and the stream.
type progressText struct {
	Percent              float64
	Stream, Counts       string
	Bytes, ETA, Duration string
	Streams              []streamText
}

func progressOf(j *app.JobView) progressText {
	pr := j.Progress
	t := progressText{Percent: pr.Percent, Stream: pr.Stream, Duration: duration(j.Duration())}
	if j.Status == app.StatusCompleted {
		t.Percent = 100
	}
	if pr.Total > 0 {
		t.Counts = fmt.Sprintf("%d of %d records", pr.Records, pr.Total)
	} else if pr.Records > 0 {
		t.Counts = fmt.Sprintf("%d records", pr.Records)
	}
	if pr.Blobs > 0 || pr.BlobBytes > 0 {
		t.Bytes = fmt.Sprintf("%d media files, %s", pr.Blobs, human.Bytes(pr.BlobBytes))
	}
	for _, st := range pr.Streams {
		c := streamText{Name: st.Name, Counts: fmt.Sprintf("%d records", st.Records), State: "waiting"}
		if st.Total > 0 {
			c.Counts = fmt.Sprintf("%d of %d records", st.Records, st.Total)
		}
		switch {
		case st.Done || j.Status == app.StatusCompleted:
			c.State = "done"
		case st.Name == pr.Stream && j.Running():
			c.State = "running"
		case st.Name == pr.Stream:
			c.State = "stopped"
		}
		t.Streams = append(t.Streams, c)
	}
	if j.Running() && pr.ETA != "" && pr.ETA != "0s" {
		t.ETA = "about " + pr.ETA + " left"
	}
	return t
}

func itemOf(j *app.JobView) item {
	t := progressOf(j)
	it := item{ID: j.ID, Status: string(j.Status), Running: j.Running(), Percent: math.Round(t.Percent*10) / 10, Stream: t.Stream, Counts: t.Counts,
		Bytes: t.Bytes, ETA: t.ETA, Duration: t.Duration, Streams: t.Streams}
	if j.Size > 0 {
		it.Size = human.Bytes(j.Size)
	}
	return it
}

// duration is d in words people read at a glance.
func duration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s"
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// snapshot is the newest jobs, read at most once per half interval for
// every open event stream together: 50 open pages cost the state
// database one query a second, not 50.
type snapshot struct {
	mu   sync.Mutex
	at   time.Time
	jobs []*app.JobView
	err  error
}

// snapshotSize is how many of the newest jobs the streams follow (the
// exports page shows as many).
const snapshotSize = 200

// snapshotTimeout bounds the shared read of the newest jobs.
const snapshotTimeout = 10 * time.Second

// recent reads the newest jobs for every stream together, or gives the
// last read when it is less than Interval/2 old and was made after
// notBefore. The read is not the caller's: it goes on when that caller's
// browser goes away (others wait for it under the lock), bounded by
// snapshotTimeout.
func (s *Server) recent(ctx context.Context, notBefore time.Time) ([]*app.JobView, error) {
	s.snap.mu.Lock()
	defer s.snap.mu.Unlock()
	if time.Since(s.snap.at) < s.Interval/2 && s.snap.at.After(notBefore) {
		return s.snap.jobs, s.snap.err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), snapshotTimeout)
	defer cancel()
	start := time.Now() // what the read gives is at least this new
	s.snap.jobs, s.snap.err = s.Svc.Jobs(ctx, app.JobQuery{Limit: snapshotSize})
	s.snap.at = start
	return s.snap.jobs, s.snap.err
}

// visible are the items p may see: every job for an admin, a user's own
// personal exports otherwise, as read after notBefore (recent).
func (s *Server) visible(ctx context.Context, p *principal, notBefore time.Time) ([]item, error) {
	jobs, err := s.recent(ctx, notBefore)
	if err != nil {
		return nil, err
	}
	out := make([]item, 0, len(jobs))
	for _, j := range jobs {
		if p.admin() || (j.Kind == app.KindExport && j.RequestedBy == p.User && j.Via == "mydata") {
			out = append(out, itemOf(j))
		}
	}
	return out, nil
}

// progress is the poll fallback of the event stream: every visible
// job's state as JSON.
func (s *Server) progress(w http.ResponseWriter, r *http.Request, p *principal) {
	items, err := s.visible(r.Context(), p, time.Time{})
	if err != nil {
		zerolog.Ctx(r.Context()).Error().Err(err).Msg("dashboard: could not read the jobs' progress")
		http.Error(w, "could not read the jobs' progress; the details are in Ferry's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(items)
}

// sessionRecheck is how often an open event stream checks that its
// session is still live and its grant still configured (a variable for
// the tests).
var sessionRecheck = 30 * time.Second

// events is the server-sent event stream of job progress: every visible
// job once, then each job whose state changed, every Interval. It ends
// with an "signedout" event when the session ends. The first event is
// read after the stream opened, never taken from an older shared read: a
// page opens its stream once it is rendered, and a state older than the
// page would overwrite it (a just-deleted export shown "completed" again
// until the next change).
func (s *Server) events(w http.ResponseWriter, r *http.Request, p *principal) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 3000\n\n")
	rc.Flush()
	sent := map[string]item{}
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	checked := time.Now()
	notBefore := checked // the first read: newer than the page
	for {
		items, err := s.visible(r.Context(), p, notBefore)
		notBefore = time.Time{}
		if err == nil {
			var changed []item
			for _, it := range items {
				if prev, ok := sent[it.ID]; !ok || !reflect.DeepEqual(prev, it) {
					changed = append(changed, it)
					sent[it.ID] = it
				}
			}
			if len(changed) > 0 {
				data, _ := json.Marshal(changed)
				if _, err := fmt.Fprintf(w, "event: progress\ndata: %s\n\n", data); err != nil {
					return
				}
				if rc.Flush() != nil {
					return
				}
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case <-tick.C:
		}
		if p.session != "" && time.Since(checked) > sessionRecheck {
			checked = time.Now()
			if g, err := s.Svc.Session(r.Context(), p.session); err != nil || !s.granted(g) {
				fmt.Fprint(w, "event: signedout\ndata: {}\n\n")
				rc.Flush()
				return
			}
		}
	}
}

// newRandom is a random value for a cookie (192 bits).
func newRandom() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func secs(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
