package integration

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/test/integration/install"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// hungPort returns a loopback address that accepts connections and never
// answers: a webhook that hangs, so only timeoutSeconds ends the call.
func hungPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case <-done:
				return
			default:
			}
		}
	}()
	t.Cleanup(func() { close(done); _ = l.Close() })
	return l.Addr().String()
}

// TestFailurePolicy: gracekeeper's webhook configurations (as the chart
// renders them, failurePolicy a value) pointed at a webhook that is down: with
// Ignore pods are admitted, with Fail they are refused, and either way the
// API server answers within the webhook's timeoutSeconds, not the client's.
func TestFailurePolicy(t *testing.T) {
	const timeoutSeconds = 1 // the least the API allows: keeps the hung cases short
	// The client gives up far later than the webhook timeout: if the API server
	// did not honour timeoutSeconds, the create would end with our deadline.
	const clientDeadline = 15 * time.Second

	for name, tc := range map[string]struct {
		addr func(*testing.T) string
		fp   admissionregistrationv1.FailurePolicyType
	}{
		"closed port, Ignore admits":  {closedPort, admissionregistrationv1.Ignore},
		"closed port, Fail refuses":   {closedPort, admissionregistrationv1.Fail},
		"hung webhook, Ignore admits": {hungPort, admissionregistrationv1.Ignore},
		"hung webhook, Fail refuses":  {hungPort, admissionregistrationv1.Fail},
	} {
		t.Run(name, func(t *testing.T) {
			// Our live webhooks skip this namespace (ignore label); the broken
			// copies select it by its scenario label instead.
			ns, scenario := newNamespace(t, map[string]string{install.IgnoreLabel: "true"})
			// Fail first; switched to tc.fp once the API server has loaded it.
			mut, val, err := install.Webhooks(install.Options{FailurePolicy: admissionregistrationv1.Fail, TimeoutSeconds: timeoutSeconds},
				"https://"+tc.addr(t), env.caBundle)
			if err != nil {
				t.Fatal(err)
			}
			mut.Name, val.Name = "broken-"+scenario, "broken-"+scenario
			// The policy webhook is cluster-scoped (no namespaceSelector
			// applies): a broken copy would refuse every other test's policies.
			val.Webhooks = slices.DeleteFunc(val.Webhooks, func(w admissionregistrationv1.ValidatingWebhook) bool {
				return strings.HasPrefix(w.Name, "validate-policies.")
			})
			sel := &metav1.LabelSelector{MatchLabels: map[string]string{scenarioLabel: scenario}}
			for i := range mut.Webhooks {
				mut.Webhooks[i].NamespaceSelector = sel
			}
			for i := range val.Webhooks {
				val.Webhooks[i].NamespaceSelector = sel
			}
			if err := env.c.Create(ctxFor(t), mut); err != nil {
				t.Fatal(err)
			}
			if err := env.c.Create(ctxFor(t), val); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = env.c.Delete(context.Background(), mut); _ = env.c.Delete(context.Background(), val) })

			// With Fail, a refusal proves the API server has loaded the configuration.
			probe := newPod(ns, "probe", 30, "app")
			eventually(t, "broken webhook in effect", func(ctx context.Context) (bool, string) {
				_, err := dryRunPod(ctx, probe)
				return err != nil && strings.Contains(err.Error(), "failed calling webhook"), errString(err)
			})
			if tc.fp == admissionregistrationv1.Ignore {
				mut.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
				for i := range val.Webhooks {
					val.Webhooks[i].FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
				}
				if err := env.c.Update(ctxFor(t), mut); err != nil {
					t.Fatal(err)
				}
				if err := env.c.Update(ctxFor(t), val); err != nil {
					t.Fatal(err)
				}
				eventually(t, "Ignore in effect", func(ctx context.Context) (bool, string) {
					_, err := dryRunPod(ctx, probe)
					return err == nil, errString(err)
				})
			}

			ctx, cancel := context.WithTimeout(context.Background(), clientDeadline)
			defer cancel()
			p := newPod(ns, "real", 30, "app")
			err = env.c.Create(ctx, p)
			if err == nil {
				t.Cleanup(func() { releasePod(t, client.ObjectKeyFromObject(p)) })
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Fatalf("the API server did not answer within %s (webhook timeout %ds)", clientDeadline, timeoutSeconds)
			}
			switch tc.fp {
			case admissionregistrationv1.Ignore:
				if err != nil {
					t.Errorf("failurePolicy Ignore: pod refused: %v", err)
				}
			case admissionregistrationv1.Fail:
				if err == nil {
					t.Error("failurePolicy Fail: pod admitted")
				} else if !strings.Contains(err.Error(), "failed calling webhook") {
					t.Errorf("failurePolicy Fail: error %q does not say the webhook failed", err)
				}
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
