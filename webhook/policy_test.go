package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestReviewPolicy: the LifecyclePolicy webhook refuses a policy
// policies.ValidatePolicy finds errors in, naming the field; admits a good
// one without needing the policy cache; answers bad input with 400.
func TestReviewPolicy(t *testing.T) {
	srv, _ := newTestServer(t, StaticSource{}, Config{}) // no set: the policy route needs none
	review := func(kind, op, spec string) []byte {
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1",` +
			`"kind":{"group":"gracekeeper.dev","version":"v1alpha1","kind":"` + kind + `"},"operation":"` + op + `","name":"p",` +
			`"object":{"apiVersion":"gracekeeper.dev/v1alpha1","kind":"LifecyclePolicy","metadata":{"name":"p"},"spec":` + spec + `}}}`)
	}
	for name, tc := range map[string]struct {
		body    []byte
		allowed bool
		code    int32
		msg     string
	}{
		"good":            {review("LifecyclePolicy", "CREATE", `{"preStop":{"sleep":{"seconds":5}}}`), true, 0, ""},
		"port 0":          {review("LifecyclePolicy", "CREATE", `{"preStop":{"httpGet":{"port":0,"budgetSeconds":1}}}`), false, 422, "spec.preStop.httpGet.port: Invalid value: 0"},
		"bad glob update": {review("LifecyclePolicy", "UPDATE", `{"match":{"containers":["web["]}}`), false, 422, "spec.match.containers[0]"},
		"bad key":         {review("LifecyclePolicy", "CREATE", `{"match":{"podSelector":{"matchExpressions":[{"key":"bad key!","operator":"Exists"}]}}}`), false, 422, "spec.match.podSelector.matchExpressions[0].key"},
		"delete allowed":  {review("LifecyclePolicy", "DELETE", `{"match":{"containers":["web["]}}`), true, 0, ""},
		"wrong kind":      {review("Pod", "CREATE", `{}`), false, 400, "expected a gracekeeper.dev/v1alpha1 LifecyclePolicy"},
		"not json":        {[]byte("{"), false, 400, "not a JSON AdmissionReview"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, _ := srv.Review(context.Background(), RouteValidatePolicies, tc.body)
			if code != http.StatusOK {
				t.Fatalf("HTTP %d: %s", code, out)
			}
			var r struct {
				Response response `json:"response"`
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatal(err)
			}
			if r.Response.Allowed != tc.allowed {
				t.Fatalf("allowed=%v, want %v: %s", r.Response.Allowed, tc.allowed, out)
			}
			if tc.allowed {
				return
			}
			if r.Response.Result == nil || r.Response.Result.Code != tc.code || !strings.Contains(r.Response.Result.Message, tc.msg) {
				t.Errorf("status %+v, want code %d with %q", r.Response.Result, tc.code, tc.msg)
			}
		})
	}
}
