package dashboard

import (
	"fmt"
	"slices"

	"github.com/ferry-matrix/ferry/app"
	"github.com/ferry-matrix/ferry/internal/human"
)

// chart is a bar chart drawn as SVG on the server: one bar per run,
// oldest on the left. Its colours come from classes (the CSP forbids
// style attributes).
type chart struct {
	Title      string
	Width      int
	Height     int
	Bars       []bar
	Max        string // the top of the scale, in words
	From, To   string // the first and last run's dates
	Empty      bool
	Text       string  // the success rate in words
	RateWidth  float64 // the success bar's length
	RateFailed float64
}

// bar is one run's bar.
type bar struct {
	X, Y, W, H float64
	Class      string // ok, failed, running
	Label      string // the run's date and value (the bar's <title>)
}

const (
	chartWidth  = 480
	chartHeight = 120
)

// runCharts draws a schedule's runs (newest first): archive size and
// duration per run, and the success rate of the ended runs.
func runCharts(runs []*app.JobView) (size, dur, rate chart) {
	chrono := slices.Clone(runs)
	slices.Reverse(chrono)
	size = barChart("Archive size per run", chrono, func(j *app.JobView) float64 { return float64(j.Size) },
		func(v float64) string { return human.Bytes(int64(v)) })
	dur = barChart("Duration per run", chrono, func(j *app.JobView) float64 {
		if j.Running() {
			return 0
		}
		return j.Duration().Seconds()
	}, func(v float64) string { return duration(secs(v)) })
	rate = chart{Title: "Success rate", Width: chartWidth, Height: 24}
	var ok, ended int
	for _, j := range runs {
		switch j.Status {
		case app.StatusCompleted, app.StatusDeleted:
			ok++
			ended++
		case app.StatusFailed, app.StatusCancelled:
			ended++
		}
	}
	if ended == 0 {
		rate.Empty, rate.Text = true, "no run has ended yet"
		return
	}
	rate.RateWidth = float64(chartWidth) * float64(ok) / float64(ended)
	rate.RateFailed = float64(chartWidth) - rate.RateWidth
	rate.Text = fmt.Sprintf("%d of %d runs succeeded (%.0f%%)", ok, ended, 100*float64(ok)/float64(ended))
	return
}

func barChart(title string, runs []*app.JobView, value func(*app.JobView) float64, format func(float64) string) chart {
	c := chart{Title: title, Width: chartWidth, Height: chartHeight}
	if len(runs) == 0 {
		c.Empty = true
		return c
	}
	top := 0.0
	for _, j := range runs {
		top = max(top, value(j))
	}
	c.Max = format(top)
	c.From, c.To = runs[0].CreatedAt.UTC().Format("2006-01-02"), runs[len(runs)-1].CreatedAt.UTC().Format("2006-01-02")
	step := float64(chartWidth) / float64(len(runs))
	for i, j := range runs {
		v := value(j)
		h := 1.0 // a failed run's empty bar still shows
		if top > 0 {
			h = max(h, v/top*float64(chartHeight))
		}
		class := "ok"
		switch {
		case j.Running():
			class = "running"
		case j.Status == app.StatusFailed || j.Status == app.StatusCancelled:
			class = "failed"
		}
		c.Bars = append(c.Bars, bar{X: float64(i)*step + 1, W: max(step-2, 1), Y: float64(chartHeight) - h, H: h, Class: class,
			Label: j.CreatedAt.UTC().Format("2006-01-02 15:04Z") + ": " + format(v) + " (" + string(j.Status) + ")"})
	}
	return c
}
