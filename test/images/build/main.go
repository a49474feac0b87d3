// Command build writes the local test node's images as one docker-archive
// tarball for `ctr images import`:
//
//	go run ./test/images/build -o bin/images/node.tar pause testbox
//	go run ./test/images/build -o bin/images/gracekeeper.tar -gracekeeper-ref gracekeeper:dev gracekeeper
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gracekeeper/gracekeeper/test/images"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "build images:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	out := fs.String("o", "", "tarball to write (required)")
	module := fs.String("module", ".", "directory of the gracekeeper Go module")
	busybox := fs.String("busybox", "/bin/busybox", "static busybox for the testbox image (Debian: busybox-static)")
	gkBin := fs.String("gracekeeper-bin", "", "prebuilt static gracekeeper binary; empty: build ./cmd/gracekeeper with CGO_ENABLED=0")
	gkRef := fs.String("gracekeeper-ref", "gracekeeper:dev", "reference of the gracekeeper image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return fmt.Errorf("usage: build -o FILE pause|testbox|gracekeeper...")
	}
	imgs := map[string]v1.Image{}
	for _, which := range fs.Args() {
		var (
			ref string
			img v1.Image
			err error
		)
		switch which {
		case "pause":
			ref = images.PauseRef
			var bin []byte
			if bin, err = images.BuildStatic(ctx, *module, "./test/images/pause"); err == nil {
				img, err = images.Pause(bin)
			}
		case "testbox":
			ref = images.TestboxRef
			img, err = testbox(ctx, *busybox)
		case "gracekeeper":
			ref = *gkRef
			var bin []byte
			if *gkBin != "" {
				bin, err = os.ReadFile(*gkBin)
			} else {
				bin, err = images.BuildStatic(ctx, *module, "./cmd/gracekeeper")
			}
			if err == nil {
				img, err = images.Gracekeeper(bin)
			}
		default:
			return fmt.Errorf("unknown image %q (want pause, testbox or gracekeeper)", which)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", which, err)
		}
		imgs[ref] = img
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := images.Write(*out, imgs); err != nil {
		return err
	}
	for ref := range imgs {
		fmt.Printf(">> wrote %s to %s\n", ref, *out)
	}
	return nil
}

// testbox asks the busybox binary itself which applets it has.
func testbox(ctx context.Context, busybox string) (v1.Image, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("%w (install Debian's busybox-static)", err)
	}
	list, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	return images.Testbox(bin, strings.Fields(string(list)))
}
