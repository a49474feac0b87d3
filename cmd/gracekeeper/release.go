package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/go-logr/logr/funcr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gracekeeper/gracekeeper/finalizer"
)

// runReleaseFinalizers is `gracekeeper release-finalizers`, the chart's
// pre-delete hook: package finalizer does the work.
func runReleaseFinalizers(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gracekeeper release-finalizers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		kubeconfig string
		dryRun     bool
	)
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, then ~/.kube/config)")
	fs.BoolVar(&dryRun, "dry-run", false, "report what would be removed; the API server checks the patches as dry runs, nothing is written or called")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gracekeeper release-finalizers [--kubeconfig FILE] [--dry-run]")
		fmt.Fprintln(stderr, "Removes every gracekeeper finalizer (and only those) from every pod labelled gracekeeper.dev/finalize=true,")
		fmt.Fprintln(stderr, "after recording what it can. Exit code: 0 done, 1 some pods failed, 2 bad flags or no cluster.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gracekeeper release-finalizers: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var (
		cfg *rest.Config
		err error
	)
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = config.GetConfig()
	}
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper release-finalizers: %v\n", err)
		return 2
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper release-finalizers: %v\n", err)
		return 2
	}
	// Records whose Event the API server refuses (a namespace being
	// deleted, quota, RBAC) are written here, as JSON lines on stderr.
	lg := funcr.NewJSON(func(obj string) { fmt.Fprintln(stderr, obj) }, funcr.Options{LogTimestamp: true})
	rep, err := finalizer.ReleaseAll(ctrllog.IntoContext(ctx, lg), c, finalizer.ReleaseOptions{DryRun: dryRun})
	prefix := ""
	if dryRun {
		prefix = "dry run: "
	}
	fmt.Fprintf(stdout, "%s%s\n", prefix, rep)
	if err != nil {
		fmt.Fprintf(stderr, "gracekeeper release-finalizers: %v\n", err)
		return 1
	}
	return 0
}
