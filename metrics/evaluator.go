package metrics

import "github.com/prometheus/client_golang/prometheus"

// planFallbacksOpts describe the count of evaluations the plan evaluator
// left to topdown.
var planFallbacksOpts = prometheus.CounterOpts{
	Name: "guestgate_policy_plan_fallbacks_total",
	Help: "Evaluations the plan evaluator did not finish (a conflict, a halting built-in), answered by OPA's topdown instead.",
}

// PlanFallback counts one evaluation the plan evaluator left to topdown.
func (m *Metrics) PlanFallback() { m.planFallbacks.Inc() }
