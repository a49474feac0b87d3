package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	orv1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
)

// Report naming and ownership.
const (
	// ReportName is the one Report gracekeeper keeps in each namespace.
	ReportName = "gracekeeper"
	// ReportSource is the engine name in Report.source and each result.
	ReportSource = "gracekeeper"
	// LabelManagedBy marks the reports gracekeeper owns (and may delete).
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "gracekeeper"
	// ruleBudget is the rule of every result: gracekeeper has one check
	// per policy, the shutdown budget and the hooks it injects.
	ruleBudget = "shutdown-budget"
)

// DefaultMaxResults bounds the results in one report: a report is one
// object, and etcd refuses objects over 1.5 MiB (--max-request-bytes), so a
// namespace with thousands of pods must not make it unwritable. Fails come
// first, then warns, then passes; the summary counts every result.
const DefaultMaxResults = 1000

// buildReport is the report for one namespace, or nil when no policy
// selects anything there (then there is no report). Timestamps are zero:
// the writer stamps them, so that unchanged results compare equal.
func buildReport(ns string, items []Item, maxResults int) *orv1.Report {
	var results []orv1.ReportResult
	var sum orv1.ReportSummary
	for _, it := range items {
		for _, v := range Verdicts(it) {
			r := orv1.ReportResult{
				Source:      ReportSource,
				Policy:      v.Policy,
				Rule:        ruleBudget,
				Result:      orv1.Result(v.Outcome),
				Scored:      true,
				Subjects:    []corev1.ObjectReference{it.ref()},
				Description: v.Message,
			}
			if v.Reason != "" {
				r.Properties = map[string]string{"reason": string(v.Reason), "action": string(v.Action)}
			}
			switch v.Outcome {
			case Pass:
				sum.Pass++
			case Fail:
				sum.Fail++
				r.Severity = "high"
			case Warn:
				sum.Warn++
				r.Severity = "medium"
			}
			results = append(results, r)
		}
	}
	if len(results) == 0 {
		return nil
	}
	rank := map[orv1.Result]int{"fail": 0, "warn": 1, "pass": 2}
	sort.SliceStable(results, func(i, j int) bool { return rank[results[i].Result] < rank[results[j].Result] })
	rep := &orv1.Report{
		TypeMeta: metav1.TypeMeta{APIVersion: orv1.SchemeGroupVersion.String(), Kind: "Report"},
		ObjectMeta: metav1.ObjectMeta{Name: ReportName, Namespace: ns,
			Labels: map[string]string{LabelManagedBy: managedBy}},
		Source:  ReportSource,
		Summary: sum,
	}
	if maxResults > 0 && len(results) > maxResults {
		results = results[:maxResults]
		rep.Configuration = &orv1.ReportConfiguration{Limits: orv1.Limits{MaxResults: maxResults}}
	}
	rep.Results = results
	return rep
}

// reportHash identifies a report's content (labels, summary, results;
// timestamps left out), to write only reports that changed.
func reportHash(r *orv1.Report) string {
	if r == nil {
		return ""
	}
	c := struct {
		Labels  map[string]string
		Summary orv1.ReportSummary
		Config  *orv1.ReportConfiguration
		Results []orv1.ReportResult
	}{r.Labels, r.Summary, r.Configuration, make([]orv1.ReportResult, len(r.Results))}
	for i, res := range r.Results {
		res.Timestamp = metav1.Timestamp{}
		c.Results[i] = res
	}
	b, _ := json.Marshal(c)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
