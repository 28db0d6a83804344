package web

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/go-floodgate/floodgate/limiter/httplimit"
)

// metrics are the service's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	decisions *prometheus.CounterVec
	byOutcome [4]prometheus.Counter // indexed by httplimit.Outcome
	errors    prometheus.Counter
	latency   prometheus.Histogram
	issued    prometheus.Counter
	rejected  prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floodgate_decisions_total",
			Help: "Rate-limit decisions on /api/ping by outcome: allowed, denied, failed_open, failed_closed.",
		}, []string{"outcome"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floodgate_limiter_errors_total",
			Help: "Decisions that failed because Redis erred, was unreachable or slower than the budget.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "floodgate_decision_duration_seconds",
			Help:    "Time the limiter took per decision, Redis round trip included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floodgate_identities_issued_total",
			Help: "Identity cookies issued to requests without a valid one.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floodgate_cookies_rejected_total",
			Help: "Identity cookies present but invalid: malformed, tampered with, or signed under an unknown key.",
		}),
	}
	for _, o := range []httplimit.Outcome{httplimit.Allowed, httplimit.Denied, httplimit.FailedOpen, httplimit.FailedClosed} {
		m.byOutcome[o] = m.decisions.WithLabelValues(o.String())
	}
	m.reg.MustRegister(m.decisions, m.errors, m.latency, m.issued, m.rejected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
