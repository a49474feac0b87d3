// Package install holds what the integration suite and `make demo` share to
// register gracekeeper with a local kube-apiserver: the webhook
// configurations exactly as charts/gracekeeper renders them (through
// test/chartrender, Helm's own engine), rewritten to reach a server on
// loopback instead of the in-cluster Service.
package install

import (
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/gracekeeper/gracekeeper/test/chartrender"
)

// Namespace is the release namespace the chart renders for: the webhooks
// exclude it, so gracekeeper can never block its own pods.
const Namespace = chartrender.Namespace

// WebhookConfigName is the name of both webhook configurations the chart
// renders for its release (the release's full name).
const WebhookConfigName = chartrender.ReleaseName

// IgnoreLabel on a namespace keeps gracekeeper out of it (the chart's default
// webhook.ignoreLabel).
const IgnoreLabel = "gracekeeper.dev/ignore"

// Options are the chart values that shape the webhook configurations.
type Options struct {
	// FailurePolicy of every webhook (webhook.mutating/validating.failurePolicy).
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// TimeoutSeconds of every webhook (webhook.timeoutSeconds).
	TimeoutSeconds int32
	// AdmissionMode is admission.mode: "" or webhook registers the pod
	// webhooks, apiserver leaves pods to the compiled admission policies.
	AdmissionMode string
}

// DefaultOptions: Fail, so that a gracekeeper outage shows as a refusal
// rather than as pods silently admitted without hooks; 5 s, the chart's timeout.
func DefaultOptions() Options {
	return Options{FailurePolicy: admissionregistrationv1.Fail, TimeoutSeconds: 5}
}

// Webhooks renders the chart with o and returns its
// MutatingWebhookConfiguration and ValidatingWebhookConfiguration, pointed
// (chartrender.PointWebhooksAt) at baseURL plus each webhook's service path,
// trusting caBundle: what a cluster reaches through the Service, a local API
// server reaches on loopback.
func Webhooks(o Options, baseURL string, caBundle []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	values := map[string]any{
		"webhook": map[string]any{
			"timeoutSeconds": int64(o.TimeoutSeconds),
			"mutating":       map[string]any{"failurePolicy": string(o.FailurePolicy)},
			"validating":     map[string]any{"failurePolicy": string(o.FailurePolicy)},
		},
	}
	if o.AdmissionMode != "" {
		values["admission"] = map[string]any{"mode": o.AdmissionMode}
	}
	objs, err := chartrender.Render(values)
	if err != nil {
		return nil, nil, fmt.Errorf("render charts/gracekeeper: %w", err)
	}
	if _, err := chartrender.PointWebhooksAt(objs, baseURL, caBundle); err != nil {
		return nil, nil, err
	}
	var mut *admissionregistrationv1.MutatingWebhookConfiguration
	var val *admissionregistrationv1.ValidatingWebhookConfiguration
	for _, u := range objs {
		var into any
		switch u.GetKind() {
		case "MutatingWebhookConfiguration":
			mut = &admissionregistrationv1.MutatingWebhookConfiguration{}
			into = mut
		case "ValidatingWebhookConfiguration":
			val = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			into = val
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
			return nil, nil, fmt.Errorf("rendered %s: %w", u.GetKind(), err)
		}
	}
	if mut == nil || val == nil {
		return nil, nil, fmt.Errorf("charts/gracekeeper rendered no Mutating and Validating webhook configurations")
	}
	return mut, val, nil
}
