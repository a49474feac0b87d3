package install

import (
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// TestWebhooks: every webhook the chart renders is pointed at the local URL
// with its path and the CA, and the chart values come through.
func TestWebhooks(t *testing.T) {
	mut, val, err := Webhooks(Options{FailurePolicy: admissionregistrationv1.Ignore, TimeoutSeconds: 3}, "https://127.0.0.1:1234/", []byte("CA"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	check := func(name string, cc admissionregistrationv1.WebhookClientConfig, fp *admissionregistrationv1.FailurePolicyType, timeout *int32) {
		if cc.Service != nil || cc.URL == nil || string(cc.CABundle) != "CA" {
			t.Errorf("%s: clientConfig not rewritten: %+v", name, cc)
			return
		}
		got[name] = *cc.URL
		// The policy webhook fails closed whatever the values say.
		wantFP := admissionregistrationv1.Ignore
		if name == "validate-policies.gracekeeper.dev" {
			wantFP = admissionregistrationv1.Fail
		}
		if fp == nil || *fp != wantFP || timeout == nil || *timeout != 3 {
			t.Errorf("%s: failurePolicy %v timeout %v, want %s 3", name, fp, timeout, wantFP)
		}
	}
	for _, w := range mut.Webhooks {
		check(w.Name, w.ClientConfig, w.FailurePolicy, w.TimeoutSeconds)
	}
	for _, w := range val.Webhooks {
		check(w.Name, w.ClientConfig, w.FailurePolicy, w.TimeoutSeconds)
	}
	want := map[string]string{
		"mutate-pods.gracekeeper.dev":        "https://127.0.0.1:1234/mutate-pods",
		"validate-pods.gracekeeper.dev":      "https://127.0.0.1:1234/validate-pods",
		"validate-workloads.gracekeeper.dev": "https://127.0.0.1:1234/validate-workloads",
		"validate-policies.gracekeeper.dev":  "https://127.0.0.1:1234/validate-policies",
	}
	for name, url := range want {
		if got[name] != url {
			t.Errorf("%s: URL %q, want %q", name, got[name], url)
		}
	}
	if len(got) != len(want) {
		t.Errorf("webhooks %v, want exactly %v", got, want)
	}
}
