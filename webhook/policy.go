package webhook

import (
	"context"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

var policyGVK = metav1.GroupVersionKind{Group: v1alpha1.GroupVersion.Group, Version: v1alpha1.GroupVersion.Version, Kind: "LifecyclePolicy"}

// reviewPolicy answers the LifecyclePolicy webhook: a policy
// policies.ValidatePolicy finds errors in is refused with those errors, each
// naming its field, so `kubectl apply` says what to fix and the engine never
// holds a policy it cannot use. It needs no policy cache: it judges the
// policy alone.
func (s *Server) reviewPolicy(ctx context.Context, body []byte) answer {
	req, err := decodeEnvelope(body)
	if err == nil && req.Kind != policyGVK {
		err = badf("request %s: expected a %s, got %s", req.UID, gvkString(policyGVK), gvkString(req.Kind))
	}
	var p v1alpha1.LifecyclePolicy
	if err == nil {
		if uerr := unmarshal(req.Object, &p); uerr != nil {
			err = badf("request %s: object is not a valid LifecyclePolicy: %v", req.UID, uerr)
		}
	}
	if err != nil {
		var h *requestHeader
		if req != nil {
			h = &req.requestHeader
		}
		log.FromContext(ctx).Info("bad admission request", "uid", h.uidOrEmpty(), "error", err.Error())
		return answer{resp: errorResponse(h.uidOrEmpty(), err), outcome: outcomeError}
	}
	resp := &response{UID: req.UID, Allowed: true}
	if req.Operation != "CREATE" && req.Operation != "UPDATE" {
		return answer{resp: resp, outcome: outcomeAllowed}
	}
	errs := policies.ValidatePolicy(&p)
	if len(errs) == 0 {
		return answer{resp: resp, outcome: outcomeAllowed}
	}
	resp.Allowed = false
	resp.Result = &status{Code: http.StatusUnprocessableEntity, Reason: string(metav1.StatusReasonInvalid),
		Message: "LifecyclePolicy " + p.Name + " is invalid: " + errs.ToAggregate().Error()}
	return answer{resp: resp, outcome: outcomeDenied}
}
