package gateway

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicegw/sluice/protocol"
)

// metrics are the gateway's Prometheus collectors, namespace "sluice".
type metrics struct {
	sessionsActive  *prometheus.GaugeVec
	sessionsTotal   *prometheus.CounterVec
	commandsTotal   *prometheus.CounterVec
	checkDuration   *prometheus.HistogramVec
	resultBytes     *prometheus.CounterVec
	resultRows      *prometheus.CounterVec
	commandDuration *prometheus.HistogramVec
}

// Values of the result label of sluice_sessions_total.
const (
	resultAuthenticated = "authenticated"
	resultRefused       = "refused"
)

func newMetrics(reg prometheus.Registerer, targets []string) (*metrics, error) {
	const ns = "sluice"
	m := &metrics{
		sessionsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "sessions_active",
			Help: "Authenticated sessions currently open.",
		}, []string{"target"}),
		sessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "sessions_total",
			Help: "Authentication outcomes: result is authenticated or refused (one per refused attempt).",
		}, []string{"target", "result"}),
		commandsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "commands_total",
			Help: "Commands checked, by the action enforced (allow or deny; require_approval without an approval service is denied).",
		}, []string{"target", "action"}),
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "check_duration_seconds",
			Help:    "Time Session.Check takes: policy, approval and recording the command.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10), // 50µs .. 13s
		}, []string{"target"}),
		resultBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "result_bytes_total",
			Help: "Bytes of command results returned to clients, as plugins report them.",
		}, []string{"target"}),
		resultRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "result_rows_total",
			Help: "Rows of command results returned to clients, as plugins report them.",
		}, []string{"target"}),
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "command_duration_seconds",
			Help:    "Backend execution time of commands, as plugins report them.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1ms .. 262s
		}, []string{"target"}),
	}
	for _, c := range []prometheus.Collector{
		m.sessionsActive, m.sessionsTotal, m.commandsTotal, m.checkDuration,
		m.resultBytes, m.resultRows, m.commandDuration,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Create each target's series up front so dashboards see zeros rather
	// than missing series.
	for _, t := range targets {
		m.sessionsActive.WithLabelValues(t)
		m.sessionsTotal.WithLabelValues(t, resultAuthenticated)
		m.sessionsTotal.WithLabelValues(t, resultRefused)
		m.resultBytes.WithLabelValues(t)
		m.resultRows.WithLabelValues(t)
	}
	return m, nil
}

// targetMetrics are one target's series of the per-command metrics,
// resolved once when the gateway is built: looking a series up by its
// label values hashes every label, on every command.
type targetMetrics struct {
	name                   string
	commands               *prometheus.CounterVec // for actions not below
	allowed, denied, asked prometheus.Counter
	check, duration        prometheus.Observer
	bytes, rows            prometheus.Counter
}

func (m *metrics) forTarget(name string) *targetMetrics {
	return &targetMetrics{
		name:     name,
		commands: m.commandsTotal,
		allowed:  m.commandsTotal.WithLabelValues(name, string(protocol.Allow)),
		denied:   m.commandsTotal.WithLabelValues(name, string(protocol.Deny)),
		asked:    m.commandsTotal.WithLabelValues(name, string(protocol.RequireApproval)),
		check:    m.checkDuration.WithLabelValues(name),
		duration: m.commandDuration.WithLabelValues(name),
		bytes:    m.resultBytes.WithLabelValues(name),
		rows:     m.resultRows.WithLabelValues(name),
	}
}

// command is the commands_total series of action a.
func (tm *targetMetrics) command(a protocol.Action) prometheus.Counter {
	switch a {
	case protocol.Allow:
		return tm.allowed
	case protocol.Deny:
		return tm.denied
	case protocol.RequireApproval:
		return tm.asked
	}
	return tm.commands.WithLabelValues(tm.name, string(a))
}
