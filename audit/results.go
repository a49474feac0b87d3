package audit

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// Outcome is a policy report result for one object and one policy, in the
// words of the openreports.io API (its ReportResult.Result enum).
type Outcome string

const (
	// Pass: the policy selects the object and its shutdown budget fits.
	Pass Outcome = "pass"
	// Fail: the budget does not fit (whatever the policy's action: an
	// Audit policy's violation is a fail that is not yet enforced), or a
	// finding denies the object.
	Fail Outcome = "fail"
	// Warn: other findings (an unknown preStop duration, a hook skipped, a
	// grace period capped, a bad annotation).
	Warn Outcome = "warn"
)

// Verdict is one object judged against one policy that selects it.
type Verdict struct {
	Policy  string
	Outcome Outcome
	// Action is the policy's action that applied ("" when no finding).
	Action v1alpha1.ValidationAction
	// Reason is the first finding's reason, Message every finding's message
	// for this policy, joined with "; " (container, numbers and fix).
	Reason  policies.Reason
	Message string
}

// Verdicts judges an item per policy that selects it, in the item's policy
// order (highest priority first).
func Verdicts(it Item) []Verdict {
	out := make([]Verdict, 0, len(it.Policies))
	for _, p := range it.Policies {
		v := Verdict{Policy: p, Outcome: Pass}
		// The messages of what fails come first: they say why the result is a fail.
		var failing, other []string
		for _, f := range it.Findings {
			if f.Policy != p {
				continue
			}
			switch {
			case f.Reason == policies.ReasonBudgetExceeded || f.Action == v1alpha1.ActionDeny:
				v.Outcome = Fail
				failing = append(failing, f.Message)
			case f.Reason == policies.ReasonOptedOut || f.Reason == policies.ReasonOptOutNotAllowed:
				// Information about the opt-out annotation, not a problem.
				other = append(other, f.Message)
			default:
				if v.Outcome == Pass {
					v.Outcome = Warn
				}
				other = append(other, f.Message)
			}
			if v.Reason == "" || f.Reason == policies.ReasonBudgetExceeded {
				v.Reason, v.Action = f.Reason, f.Action
			}
		}
		msgs := append(failing, other...)
		if len(msgs) == 0 {
			v.Message = "the shutdown budget fits terminationGracePeriodSeconds"
		} else {
			v.Message = strings.Join(msgs, "; ")
		}
		out = append(out, v)
	}
	return out
}

// Counts are one policy's numbers in one namespace (or the cluster).
type Counts struct {
	Matched, Violations, Warnings int32
}

func (c *Counts) add(o Counts) {
	c.Matched += o.Matched
	c.Violations += o.Violations
	c.Warnings += o.Warnings
}

// countByPolicy counts verdicts per policy.
func countByPolicy(items []Item) map[string]Counts {
	out := map[string]Counts{}
	for _, it := range items {
		for _, v := range Verdicts(it) {
			c := out[v.Policy]
			c.Matched++
			switch v.Outcome {
			case Fail:
				c.Violations++
			case Warn:
				c.Warnings++
			}
			out[v.Policy] = c
		}
	}
	return out
}

// refusal is a workload whose pods admission would refuse now.
type refusal struct {
	ref     corev1.ObjectReference
	message string
}

// refusals are the workloads (not pods: they were admitted already and are
// not created again) that a current Deny policy would refuse.
func refusals(items []Item) []refusal {
	var out []refusal
	for _, it := range items {
		if it.Kind == "Pod" || !it.Denied() {
			continue
		}
		var msgs []string
		for _, f := range it.Findings {
			if f.Action == v1alpha1.ActionDeny {
				msgs = append(msgs, "policy "+f.Policy+": "+f.Message)
			}
		}
		sort.Strings(msgs)
		out = append(out, refusal{ref: it.ref(), message: "pods of this " + it.Kind + " would be refused: " + strings.Join(msgs, "; ")})
	}
	return out
}

func (it Item) ref() corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: it.APIVersion, Kind: it.Kind, Namespace: it.Namespace, Name: it.Name, UID: it.UID}
}

// eventName is the name of the Event for a workload and message:
// "<name>.<uid>.audit-<hash of message>", cut to the 253 characters an
// object name may have.
func eventName(ref corev1.ObjectReference, message string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(message))
	tail := fmt.Sprintf(".%s.audit-%08x", ref.UID, h.Sum32())
	name := ref.Name
	if len(name)+len(tail) > 253 {
		name = name[:253-len(tail)]
	}
	return name + tail
}
