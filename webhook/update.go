package webhook

import (
	"bytes"
	"context"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/policies"
)

// unjudgedUpdate answers a workload UPDATE that must pass without judging
// (policies.JudgeUpdate: the pod template did not change, or the object is
// being deleted); done is false when the new template is to be judged.
// The chart's matchConditions keep most of these from being sent at all;
// this is the same rule for API servers or configurations that send them.
func (s *Server) unjudgedUpdate(ctx context.Context, req *request, obj runtime.Object) (answer, bool) {
	var old runtime.Object
	if o := bytes.TrimSpace(req.OldObject); len(o) > 0 && !bytes.Equal(o, []byte("null")) {
		old = workloadObject(req.Kind)
		if err := unmarshal(o, old); err != nil {
			err = badf("request %s: oldObject is not a valid %s: %v", req.UID, req.Kind.Kind, err)
			return answer{resp: errorResponse(req.UID, err), outcome: outcomeError}, true
		}
	}
	v := policies.JudgeUpdate(old, obj)
	if v.Judge {
		return answer{}, false
	}
	if lg := log.FromContext(ctx).V(1); lg.Enabled() {
		lg.Info("update passes unjudged", "uid", req.UID, "reason", v.Reason)
	}
	return answer{resp: &response{UID: req.UID, Allowed: true}, outcome: outcomeAllowed}, true
}
