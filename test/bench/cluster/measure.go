package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gracekeeper/gracekeeper/internal/clientscheme"
	"github.com/gracekeeper/gracekeeper/policies"
	"github.com/gracekeeper/gracekeeper/policies/v1alpha1"
)

// result is everything measured; print turns it into the README's tables.
type result struct {
	arms        []string            // in first-measured order
	samples     map[string][]sample // per arm, one per round
	unavailable []string            // modes serve refused
	held        int
	heldWall    time.Duration
	before      mem // gracekeeper before the held pods
	after       mem // and with them
}

func (r *result) add(arm string, s sample) {
	if _, ok := r.samples[arm]; !ok {
		r.arms = append(r.arms, arm)
	}
	r.samples[arm] = append(r.samples[arm], s)
}

// arm is one way of admitting the bench pod: the namespace it is created in
// and what every pod must carry afterwards.
type arm struct {
	name string
	ns   string
	want func(*corev1.Pod) bool
}

func measure(ctx context.Context, o options, progress io.Writer) (*result, error) {
	res := &result{samples: map[string][]sample{}}
	dir, err := os.MkdirTemp("", "gracekeeper-bench-cluster-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	env, cfg, kubeconfig, err := controlPlane(o.assets, dir)
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(progress, "stop control plane:", err)
		}
	}()
	if err != nil {
		return nil, err
	}
	scheme, err := clientscheme.New()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	// The clients must not be what limits the rate: no client-side throttle.
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 1e6, 1e6
	cs, err := kubernetes.NewForConfig(fast)
	if err != nil {
		return nil, err
	}
	s, err := newServer(o.gracekeeper, kubeconfig, dir)
	if err != nil {
		return nil, err
	}
	s.goMemLimit = o.goMemLimit
	s.extraArgs = o.serveArgs
	defer func() {
		if err := s.stop(); err != nil {
			fmt.Fprintln(progress, err)
		}
	}()
	// The policy webhook (failurePolicy Fail) must answer before the bench
	// policy can be created: start in webhook mode, then set up.
	if err := s.start(ctx, "webhook", false); err != nil {
		return nil, err
	}
	if err := setUp(ctx, c, s); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, ">> control plane and gracekeeper up; %d rounds of %d pods per arm, %d clients\n", o.rounds, o.n, o.c)

	unavailable := map[string]bool{}
	for r := range o.rounds {
		modes := slices.Clone(o.modes)
		if r%2 == 1 {
			slices.Reverse(modes) // alternate which mode runs first
		}
		for _, mode := range modes {
			if unavailable[mode] {
				continue
			}
			if s.cmd == nil || s.mode != mode {
				if err := s.stop(); err != nil {
					return res, err
				}
				if err := s.start(ctx, mode, false); errors.Is(err, errModeUnavailable) {
					unavailable[mode] = true
					res.unavailable = append(res.unavailable, mode)
					fmt.Fprintf(progress, ">> mode %s: %v\n", mode, err)
					continue
				} else if err != nil {
					return res, err
				}
			}
			if err := settle(ctx, c, s); err != nil {
				return res, err
			}
			arms := []arm{
				{"none", nsNone, untouched},
				{"floor", nsFloor, carriesPolicy},
				{"selected/" + mode, nsSelected, carriesPolicy},
				{"unselected/" + mode, nsUnselected, untouched},
			}
			// Rotate the order each round so no arm always runs first.
			k := r % len(arms)
			arms = append(arms[k:], arms[:k]...)
			for _, a := range arms {
				prefix := fmt.Sprintf("r%d-%s", r, mode)
				smp, err := createPods(ctx, cs, a.ns, prefix, o.n, o.c)
				if err != nil {
					return res, fmt.Errorf("arm %s: %w", a.name, err)
				}
				if err := check(ctx, cs, a, prefix, o.n); err != nil {
					return res, err
				}
				res.add(a.name, smp)
				fmt.Fprintf(progress, "   round %d %-22s %7.1f creates/s\n", r+1, a.name, float64(o.n)/smp.wall.Seconds())
				if err := clearPods(ctx, cs, a.ns); err != nil {
					return res, err
				}
			}
		}
	}
	if len(res.arms) == 0 {
		return res, fmt.Errorf("no mode of %v is available in this build", o.modes)
	}
	if o.held == 0 {
		return res, nil
	}
	// A fresh process, so what it holds is the held pods' and not the rounds'.
	if err := s.stop(); err != nil {
		return res, err
	}
	if err := s.start(ctx, "webhook", o.heapProfile != ""); err != nil {
		return res, err
	}
	return res, heldPods(ctx, c, cs, s, o, res, progress)
}

// check reads back the first and last pod of an arm's round: each carries
// what its arm promises (the policy's change, or nothing).
func check(ctx context.Context, cs *kubernetes.Clientset, a arm, prefix string, n int) error {
	for _, i := range []int{0, n - 1} {
		p, err := cs.CoreV1().Pods(a.ns).Get(ctx, fmt.Sprintf("%s-%d", prefix, i), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !a.want(p) {
			return fmt.Errorf("arm %s: pod %s does not carry what it should: %s", a.name, p.Name, describe(p))
		}
	}
	return nil
}

// heldPods creates o.held pods a policy gives the termination-record
// finalizer (gracekeeper's finalizer controller caches every one of them,
// and the audit every pod) and reads gracekeeper's memory before and once it
// has settled with them.
func heldPods(ctx context.Context, c client.Client, cs *kubernetes.Clientset, s *server, o options, res *result, progress io.Writer) error {
	if err := c.Create(ctx, benchPolicy("held", "held", v1alpha1.TerminationRecordFinalizer)); err != nil {
		return err
	}
	held := func(p *corev1.Pod) bool {
		return slices.Contains(p.Finalizers, string(v1alpha1.TerminationRecordFinalizer)) && p.Labels[policies.LabelFinalize] == "true"
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p := benchPod(nsHeld, "probe", 30)
		if err := c.Create(ctx, p, client.DryRunAll); err != nil {
			return false, nil
		}
		return held(p), nil
	})
	if err != nil {
		return fmt.Errorf("the held policy never took effect: %w", err)
	}
	time.Sleep(3 * time.Second)
	if res.before, err = s.memory(); err != nil {
		return err
	}
	fmt.Fprintf(progress, ">> creating %d pods held by the termination-record finalizer\n", o.held)
	smp, err := createPods(ctx, cs, nsHeld, "held", o.held, o.c)
	if err != nil {
		return err
	}
	res.held, res.heldWall = o.held, smp.wall
	if err := check(ctx, cs, arm{"held", nsHeld, held}, "held", o.held); err != nil {
		return err
	}
	// Settled: the resident set moved less than 1% over three readings 2 s
	// apart (the caches have the pods and the audit's pass is done).
	var prev mem
	stable := 0
	for i := 0; i < 60 && stable < 3; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
		m, err := s.memory()
		if err != nil {
			return err
		}
		if prev.rss > 0 && absDiff(m.rss, prev.rss)*100 < prev.rss {
			stable++
		} else {
			stable = 0
		}
		prev = m
	}
	res.after = prev
	if o.heapProfile != "" {
		return s.heapProfile(o.heapProfile)
	}
	return nil
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
