package webhook

// Routes served by the admission handlers.
const (
	RouteMutatePods        = "/mutate-pods"
	RouteValidatePods      = "/validate-pods"
	RouteValidateWorkloads = "/validate-workloads"
	RouteValidatePolicies  = "/validate-policies"
)

// Route is one admission endpoint and the webhook that calls it. This table
// is the one list of routes: the server serves exactly these, and the chart
// test checks that the chart's webhook configurations register exactly
// these webhooks at these paths.
type Route struct {
	// Path is the URL path the server serves and the webhook calls.
	Path string
	// Webhook is the webhook's name in the chart's configurations.
	Webhook string
	// Mutating is true for the MutatingWebhookConfiguration's webhooks.
	Mutating bool
}

// Routes returns the admission routes, a new slice each call.
func Routes() []Route {
	return []Route{
		{Path: RouteMutatePods, Webhook: "mutate-pods.gracekeeper.dev", Mutating: true},
		{Path: RouteValidatePods, Webhook: "validate-pods.gracekeeper.dev"},
		{Path: RouteValidateWorkloads, Webhook: "validate-workloads.gracekeeper.dev"},
		{Path: RouteValidatePolicies, Webhook: "validate-policies.gracekeeper.dev"},
	}
}
