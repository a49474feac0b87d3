package main

import (
	"context"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// whileStopped kills gracekeeper (no drain, no goodbye) and shows that the
// API server goes on admitting pods by the policy without it: the compiled
// MutatingAdmissionPolicy still injects the hook, the
// ValidatingAdmissionPolicy still refuses a pod whose budget does not fit.
func (d *demo) whileStopped(ctx context.Context) error {
	if err := d.gk.kill(); err != nil {
		return fmt.Errorf("kill gracekeeper: %w", err)
	}
	select {
	case err := <-d.gk.exited:
		d.gk.exited <- err // stop() reads it again
	case <-time.After(10 * time.Second):
		return fmt.Errorf("gracekeeper still running 10s after SIGKILL")
	}
	fmt.Fprintln(d.out, "   gracekeeper is not running")
	fits := pod(demoNamespace, "web-while-stopped", 10, nil)
	if err := d.c.Create(ctx, fits); err != nil {
		return fmt.Errorf("pod/%s refused while gracekeeper is stopped: %w", fits.Name, err)
	}
	hook := "none"
	if l := fits.Spec.Containers[0].Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
		hook = fmt.Sprintf("sleep %ds", l.PreStop.Sleep.Seconds)
	}
	fmt.Fprintf(d.out, "\npod/%s  (a web pod, gracekeeper stopped)\n   admitted: preStop %s, terminationGracePeriodSeconds %d\n",
		fits.Name, hook, *fits.Spec.TerminationGracePeriodSeconds)
	bad := pod(demoNamespace, "slow-drain-while-stopped", 30, slowDrain)
	err := d.c.Create(ctx, bad)
	if err == nil {
		_ = d.c.Delete(ctx, bad, client.GracePeriodSeconds(0))
		return fmt.Errorf("pod/%s admitted while gracekeeper is stopped: the Deny policy did not hold", bad.Name)
	}
	fmt.Fprintf(d.out, "\npod/%s  (its own preStop takes 600s, gracekeeper stopped)\n   REFUSED: %s\n", bad.Name, err)
	return nil
}
