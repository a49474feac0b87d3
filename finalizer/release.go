package finalizer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// ReleaseOptions configures ReleaseAll.
type ReleaseOptions struct {
	Options
	// DryRun reports what would be removed: finalizer patches go to the API
	// server as dry runs (so permissions are checked), no Event is written
	// and no cleanup URL is called.
	DryRun bool
	// Workers bounds concurrent pods (default 8).
	Workers int
}

// ReleaseReport counts what ReleaseAll did.
type ReleaseReport struct {
	// Pods is how many labelled pods were listed; Released how many of them
	// had gracekeeper finalizers removed; Finalizers how many were removed.
	Pods, Released, Finalizers int
	// Failed pods kept a finalizer because of an error (see the error).
	Failed int
}

func (r ReleaseReport) String() string {
	return fmt.Sprintf("%d labelled pods, %d released, %d gracekeeper finalizers removed, %d failed", r.Pods, r.Released, r.Finalizers, r.Failed)
}

// ReleaseAll removes every gracekeeper finalizer (and only those) from every
// pod labelled gracekeeper.dev/finalize=true in all namespaces, after
// recording what it can: a deleted pod gets its termination Event (the same
// UID-named Event the controller writes, so never twice) with the container
// states known so far, and its cleanup URLs one POST each; a cleanup that is
// not answered 2xx, or whose pod still runs, gets a CleanupAbandoned Warning.
// It is what the chart's pre-delete hook runs, so uninstalling never strands
// pods. c must be an uncached client.
func ReleaseAll(ctx context.Context, c client.Client, opts ReleaseOptions) (ReleaseReport, error) {
	var rep ReleaseReport
	r, err := NewReconciler(c, c, opts.Options)
	if err != nil {
		return rep, err
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = DefaultMaxConcurrent
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	work := make(chan corev1.Pod)
	for range workers {
		wg.Go(func() {
			for pod := range work {
				n, err := r.release(ctx, &pod, opts.DryRun)
				mu.Lock()
				if err != nil {
					rep.Failed++
					errs = append(errs, err)
				} else if n > 0 {
					rep.Released++
					rep.Finalizers += n
				}
				mu.Unlock()
			}
		})
	}
	var listErr error
	list := &corev1.PodList{}
	opt := []client.ListOption{client.MatchingLabelsSelector{Selector: PodSelector()}, client.Limit(500)}
	for {
		if listErr = c.List(ctx, list, opt...); listErr != nil {
			listErr = fmt.Errorf("list pods labelled %s: %w", PodSelector(), listErr)
			break
		}
		for _, p := range list.Items {
			mu.Lock()
			rep.Pods++
			mu.Unlock()
			select {
			case work <- p:
			case <-ctx.Done():
			}
		}
		if list.Continue == "" || ctx.Err() != nil {
			break
		}
		opt = []client.ListOption{client.MatchingLabelsSelector{Selector: PodSelector()}, client.Limit(500), client.Continue(list.Continue)}
		list = &corev1.PodList{}
	}
	close(work)
	wg.Wait()
	return rep, errors.Join(append([]error{listErr, ctx.Err()}, errs...)...)
}

// release records what it can for one pod and removes its gracekeeper
// finalizers; it returns how many were removed.
func (r *Reconciler) release(ctx context.Context, pod *corev1.Pod, dryRun bool) (int, error) {
	own := ownedFinalizers(pod)
	if !own.any() {
		return 0, nil
	}
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("pod", client.ObjectKeyFromObject(pod)))
	names := make([]string, 0, 1+len(own.cleanups))
	if own.termination {
		names = append(names, TerminationRecord)
	}
	for _, c := range own.cleanups {
		names = append(names, c.Finalizer)
	}
	if dryRun {
		patch, _ := removalPatch(pod, names)
		if err := r.client.Patch(ctx, pod, client.RawPatch(types.JSONPatchType, patch), client.DryRunAll); err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		return len(names), nil
	}
	// A pod changes under us (the kubelet reports status, someone edits
	// finalizers): the guarded patch then fails, so read it again and retry.
	var err error
	for range 3 {
		if _, err = r.finish(ctx, pod, true, allSteps); err == nil {
			return len(names), nil
		}
		fresh := &corev1.Pod{}
		if gerr := r.client.Get(ctx, client.ObjectKeyFromObject(pod), fresh); gerr != nil {
			if apierrors.IsNotFound(gerr) {
				return len(names), nil
			}
			break
		}
		if fresh.UID != pod.UID {
			return 0, nil // another pod under the same name: not the one listed
		}
		pod = fresh
	}
	return 0, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
}
