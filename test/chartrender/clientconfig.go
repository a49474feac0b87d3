package chartrender

import (
	"encoding/base64"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// PointWebhooksAt rewrites, in place, every webhook of the rendered
// Mutating/ValidatingWebhookConfigurations in objs to call baseURL + the
// chart's service path (e.g. https://127.0.0.1:9443/mutate-pods) with caBundle,
// so a test can run the server outside a cluster behind the chart's exact
// registration (rules, selectors, policies, timeouts). It returns how many
// webhooks it rewrote.
func PointWebhooksAt(objs []*unstructured.Unstructured, baseURL string, caBundle []byte) (int, error) {
	n := 0
	for _, o := range objs {
		if o.GetKind() != "MutatingWebhookConfiguration" && o.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		hooks, _, err := unstructured.NestedSlice(o.Object, "webhooks")
		if err != nil {
			return n, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		for i, h := range hooks {
			w, ok := h.(map[string]any)
			if !ok {
				return n, fmt.Errorf("%s %s: webhook %d is not an object", o.GetKind(), o.GetName(), i)
			}
			path, _, _ := unstructured.NestedString(w, "clientConfig", "service", "path")
			if path == "" {
				return n, fmt.Errorf("%s %s: webhook %v has no service path", o.GetKind(), o.GetName(), w["name"])
			}
			w["clientConfig"] = map[string]any{
				"url":      strings.TrimSuffix(baseURL, "/") + path,
				"caBundle": base64.StdEncoding.EncodeToString(caBundle), // JSON form of []byte
			}
			hooks[i] = w
			n++
		}
		if err := unstructured.SetNestedSlice(o.Object, hooks, "webhooks"); err != nil {
			return n, err
		}
	}
	return n, nil
}
