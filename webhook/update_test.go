package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// deployJSON is a Deployment selected by the "strict" test policy
// (shutdownSeconds 45, Deny): its template, with a 30 s grace period, does
// not fit.
func deployJSON(t *testing.T, edit func(m map[string]any)) json.RawMessage {
	t.Helper()
	const base = `{"apiVersion":"apps/v1","kind":"Deployment",
	 "metadata":{"name":"strict","namespace":"shop","labels":{"app":"strict"}},
	 "spec":{"replicas":2,"selector":{"matchLabels":{"app":"strict"}},
	  "template":{"metadata":{"labels":{"app":"strict"}},
	   "spec":{"terminationGracePeriodSeconds":30,"containers":[{"name":"app","image":"nginx"}]}}}}`
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func path(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m[k].(map[string]any)
	}
	return m
}

// TestWorkloadUpdateJudgedOnlyWhenTemplateChanged: a workload created before
// a Deny policy that now selects it is still scaled, relabelled, finalized,
// re-owned and deleted by its controllers; a template change that does not
// fit is refused and one that fits passes.
func TestWorkloadUpdateJudgedOnlyWhenTemplateChanged(t *testing.T) {
	s, _ := newTestServer(t, testSource(t), Config{})
	tests := map[string]struct {
		edit      func(m map[string]any)
		oldObject string // default: the unedited Deployment
		wantAllow bool
	}{
		"scale":      {edit: func(m map[string]any) { path(m, "spec")["replicas"] = 0 }, wantAllow: true},
		"label":      {edit: func(m map[string]any) { path(m, "metadata", "labels")["team"] = "a" }, wantAllow: true},
		"annotation": {edit: func(m map[string]any) { path(m, "metadata")["annotations"] = map[string]any{"a": "b"} }, wantAllow: true},
		"finalizer":  {edit: func(m map[string]any) { path(m, "metadata")["finalizers"] = []any{"foregroundDeletion"} }, wantAllow: true},
		"ownerRefs": {edit: func(m map[string]any) {
			path(m, "metadata")["ownerReferences"] = []any{map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u"}}
		}, wantAllow: true},
		"status":     {edit: func(m map[string]any) { m["status"] = map[string]any{"replicas": 2, "readyReplicas": 1} }, wantAllow: true},
		"nil vs []":  {edit: func(m map[string]any) { path(m, "spec", "template", "spec")["volumes"] = []any{} }, wantAllow: true},
		"nil vs {}":  {edit: func(m map[string]any) { path(m, "spec", "template", "metadata")["annotations"] = map[string]any{} }, wantAllow: true},
		"old has []": {oldObject: `with-empty-env`, wantAllow: true},
		"being deleted with a template change": {edit: func(m map[string]any) {
			path(m, "metadata")["deletionTimestamp"] = "2026-01-01T00:00:00Z"
			path(m, "spec", "template", "spec")["terminationGracePeriodSeconds"] = 20
		}, wantAllow: true},
		"template change that does not fit": {edit: func(m map[string]any) {
			path(m, "spec", "template", "spec")["terminationGracePeriodSeconds"] = 40
		}, wantAllow: false},
		"template change that fits": {edit: func(m map[string]any) {
			path(m, "spec", "template", "spec")["terminationGracePeriodSeconds"] = 45
		}, wantAllow: true},
		"no oldObject: judged as a new template": {oldObject: "null", wantAllow: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			old := deployJSON(t, nil)
			switch tc.oldObject {
			case "":
			case "with-empty-env":
				old = deployJSON(t, func(m map[string]any) {
					c := path(m, "spec", "template", "spec")["containers"].([]any)[0].(map[string]any)
					c["env"] = []any{}
				})
			default:
				old = json.RawMessage(tc.oldObject)
			}
			body, err := json.Marshal(map[string]any{
				"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
				"request": map[string]any{
					"uid": "u-upd", "kind": map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"},
					"resource":  map[string]any{"group": "apps", "version": "v1", "resource": "deployments"},
					"namespace": "shop", "name": "strict", "operation": "UPDATE",
					"object": deployJSON(t, tc.edit), "oldObject": old,
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			code, out, _ := s.Review(context.Background(), RouteValidateWorkloads, body)
			if code != http.StatusOK {
				t.Fatalf("HTTP %d: %s", code, out)
			}
			var rev admissionv1.AdmissionReview
			if err := json.Unmarshal(out, &rev); err != nil || rev.Response == nil {
				t.Fatalf("bad response %v: %s", err, out)
			}
			if rev.Response.Allowed != tc.wantAllow {
				t.Fatalf("allowed = %v, want %v: %s", rev.Response.Allowed, tc.wantAllow, out)
			}
			if !tc.wantAllow && !strings.Contains(rev.Response.Result.Message, "shutdown 45s") {
				t.Errorf("denial does not name the budget: %s", rev.Response.Result.Message)
			}
		})
	}

	t.Run("malformed oldObject is a 400", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{
			"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
			"request": map[string]any{
				"uid": "u-bad", "kind": map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"},
				"namespace": "shop", "name": "strict", "operation": "UPDATE",
				"object": deployJSON(t, nil), "oldObject": map[string]any{"spec": 7},
			},
		})
		_, out, _ := s.Review(context.Background(), RouteValidateWorkloads, body)
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(out, &rev); err != nil || rev.Response == nil {
			t.Fatalf("bad response %v: %s", err, out)
		}
		if rev.Response.Allowed || rev.Response.Result == nil || rev.Response.Result.Code != 400 || !strings.Contains(rev.Response.Result.Message, "oldObject") {
			t.Errorf("want allowed:false code 400 naming oldObject, got %s", out)
		}
	})
}
