// Package images builds the container images the local test node runs — the
// pod sandbox (pause), a busybox test image and gracekeeper itself — as
// image tarballs with go-containerregistry, so that no registry and no Docker
// are needed: `ctr -n k8s.io images import` loads them and pods use
// imagePullPolicy: Never.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// References the local node uses. A registry host with a dot keeps them
// apart from Docker Hub names, so nothing ever tries to pull them.
const (
	PauseRef   = "gracekeeper.local/pause:1"
	TestboxRef = "gracekeeper.local/testbox:1"
	// NonRootUID is distroless' "nonroot" user, which the chart runs as.
	NonRootUID = 65532
)

// File is one entry of an image layer: a regular file (Data), a directory
// (Dir) or a symlink (Link).
type File struct {
	Name string
	Mode int64
	Data []byte
	Link string
	Dir  bool
}

// epoch keeps layers reproducible: the same inputs give the same digest.
var epoch = time.Unix(0, 0)

// Layer writes files into one uncompressed tar layer, parents first.
func Layer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	sorted := append([]File(nil), files...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, f := range sorted {
		if f.Name == "" || path.IsAbs(f.Name) {
			return nil, fmt.Errorf("layer entry %q: name must be relative and non-empty", f.Name)
		}
		h := &tar.Header{Name: f.Name, Mode: f.Mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, f.Name+"/"
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", f.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// Image is a single-layer linux image of this machine's architecture.
func Image(files []File, cfg v1.Config) (v1.Image, error) {
	layer, err := Layer(files)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", runtime.GOARCH, v1.Time{Time: epoch}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// Pause is the sandbox image: the static pause binary as its entrypoint.
func Pause(pause []byte) (v1.Image, error) {
	return Image([]File{{Name: "pause", Mode: 0o755, Data: pause}},
		v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
}

// Testbox is busybox-static with a symlink per applet (sh, sleep, trap is a
// shell builtin), for test containers that must trap SIGTERM.
func Testbox(busybox []byte, applets []string) (v1.Image, error) {
	files := []File{{Name: "bin", Dir: true}, {Name: "tmp", Dir: true, Mode: 0o1777},
		{Name: "bin/busybox", Mode: 0o755, Data: busybox}}
	seen := map[string]bool{"busybox": true}
	for _, a := range applets {
		base := path.Base(a)
		if a == "" || seen[base] {
			continue
		}
		seen[base] = true
		files = append(files, File{Name: "bin/" + base, Link: "busybox"})
	}
	if !seen["sh"] || !seen["sleep"] {
		return nil, fmt.Errorf("busybox applets lack sh or sleep (got %d applets)", len(applets))
	}
	return Image(files, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}})
}

// Gracekeeper is the gracekeeper image: its static binary, run as the
// non-root user the chart's securityContext expects.
func Gracekeeper(binary []byte) (v1.Image, error) {
	uid := fmt.Sprintf("%d:%d", NonRootUID, NonRootUID)
	return Image([]File{{Name: "gracekeeper", Mode: 0o755, Data: binary}, {Name: "tmp", Dir: true, Mode: 0o1777}},
		v1.Config{Entrypoint: []string{"/gracekeeper"}, Cmd: []string{"serve"}, User: uid})
}

// Write saves images as one docker-archive tarball (what `docker save`
// writes and `ctr images import` reads), each under its reference.
func Write(file string, imgs map[string]v1.Image) error {
	refs := map[name.Reference]v1.Image{}
	for ref, img := range imgs {
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", ref, err)
		}
		refs[tag] = img
	}
	tmp := file + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, file)
}

// BuildStatic compiles a Go main package without cgo, so it runs in an
// image that has no libc, and returns the binary.
func BuildStatic(ctx context.Context, moduleDir, pkg string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "gk-image-build")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := path.Join(dir, "bin")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}
