package main

import (
	"flag"
	"time"

	"github.com/gracekeeper/gracekeeper/app"
	"github.com/gracekeeper/gracekeeper/audit"
)

// auditFlags are serve's flags for the background audit (the chart's
// audit.* values).
func auditFlags(fs *flag.FlagSet, o *app.Options) {
	fs.BoolVar(&o.AuditEnabled, "audit", true, "run the background audit on the leader: judge existing pods and workloads against the policies")
	fs.DurationVar(&o.Audit.Interval, "audit-interval", time.Hour, "background audit: period of a full pass besides the passes policy and object changes trigger; 0 disables the period")
	fs.BoolVar(&o.Audit.Reports, "audit-reports", true, "background audit: write an openreports.io/v1alpha1 Report per namespace when that CRD is installed")
	fs.BoolVar(&o.Audit.Events, "audit-events", true, "background audit: record a Warning Event on a workload whose pods a Deny policy would refuse")
	fs.Float64Var(&o.Audit.WritesPerSecond, "audit-writes-per-second", 5, "background audit: API writes per second (reports, policy status, Events)")
	fs.IntVar(&o.Audit.MaxResults, "audit-max-results", audit.DefaultMaxResults, "background audit: most results kept in one namespace's report (failures first)")
}
