// Package webhookconfig keeps gracekeeper's pod webhooks narrowed to what
// the current LifecyclePolicies can select, as Kyverno generates its
// webhook rules from its policies: the namespaceSelector and a
// matchCondition of the chart's MutatingWebhookConfiguration and
// ValidatingWebhookConfiguration follow the policies, so a pod no policy
// can select costs the API server no webhook call, and with no policy there
// is no call at all. Compute and Narrow* are pure; Reconciler writes them.
package webhookconfig
