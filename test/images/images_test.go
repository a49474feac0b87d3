package images

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type entry struct {
	typ  byte
	mode int64
	link string
	data string
}

// readBack writes img to a tarball, loads it again as `ctr images import`
// would (by reference) and returns its config and its files.
func readBack(t *testing.T, ref string, img v1.Image) (*v1.ConfigFile, map[string]entry) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "img.tar")
	if err := Write(file, map[string]v1.Image{ref: img}); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatalf("the tarball does not hold %s: %v", ref, err)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want 1 layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = entry{typ: h.Typeflag, mode: h.Mode, link: h.Linkname, data: string(b)}
	}
	return cf, files
}

func TestImages(t *testing.T) {
	tests := map[string]struct {
		build      func() (v1.Image, error)
		ref        string
		user       string
		entrypoint []string
		files      map[string]entry
	}{
		"pause runs /pause as nobody": {
			build:      func() (v1.Image, error) { return Pause([]byte("PAUSE")) },
			ref:        PauseRef,
			user:       "65535:65535",
			entrypoint: []string{"/pause"},
			files:      map[string]entry{"pause": {typ: tar.TypeReg, mode: 0o755, data: "PAUSE"}},
		},
		"testbox links each applet to busybox once": {
			build: func() (v1.Image, error) {
				return Testbox([]byte("BUSYBOX"), []string{"sh", "sleep", "/usr/bin/env", "sh", "busybox"})
			},
			ref: TestboxRef,
			files: map[string]entry{
				"bin/":        {typ: tar.TypeDir, mode: 0o755},
				"tmp/":        {typ: tar.TypeDir, mode: 0o1777},
				"bin/busybox": {typ: tar.TypeReg, mode: 0o755, data: "BUSYBOX"},
				"bin/sh":      {typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
				"bin/sleep":   {typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
				"bin/env":     {typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
			},
		},
		"gracekeeper runs serve as the non-root user": {
			build:      func() (v1.Image, error) { return Gracekeeper([]byte("GK")) },
			ref:        "gracekeeper:dev",
			user:       "65532:65532",
			entrypoint: []string{"/gracekeeper"},
			files: map[string]entry{
				"gracekeeper": {typ: tar.TypeReg, mode: 0o755, data: "GK"},
				"tmp/":        {typ: tar.TypeDir, mode: 0o1777},
			},
		},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			img, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			cf, files := readBack(t, tc.ref, img)
			if cf.OS != "linux" || cf.Architecture == "" {
				t.Errorf("platform %s/%s, want linux/<arch>", cf.OS, cf.Architecture)
			}
			if cf.Config.User != tc.user {
				t.Errorf("user %q, want %q", cf.Config.User, tc.user)
			}
			if len(tc.entrypoint) > 0 && (len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != tc.entrypoint[0]) {
				t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, tc.entrypoint)
			}
			if len(files) != len(tc.files) {
				t.Errorf("layer has %d entries, want %d: %v", len(files), len(tc.files), files)
			}
			for n, want := range tc.files {
				if got, ok := files[n]; !ok || got != want {
					t.Errorf("entry %s = %+v (present %v), want %+v", n, got, ok, want)
				}
			}
			// Same inputs, same digest: re-imports are no-ops.
			again, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			d1, _ := img.Digest()
			d2, _ := again.Digest()
			if d1 != d2 {
				t.Errorf("digest changed between two builds: %s vs %s", d1, d2)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	tests := map[string]func() error{
		"testbox without sh": func() error { _, err := Testbox([]byte("x"), []string{"sleep"}); return err },
		"absolute layer path": func() error {
			_, err := Layer([]File{{Name: "/etc/passwd", Data: []byte("x")}})
			return err
		},
		"empty layer path": func() error { _, err := Layer([]File{{Name: ""}}); return err },
		"invalid reference": func() error {
			img, err := Pause([]byte("p"))
			if err != nil {
				return nil
			}
			return Write(filepath.Join(t.TempDir(), "x.tar"), map[string]v1.Image{"UPPER/Case:tag!": img})
		},
	}
	for desc, run := range tests {
		t.Run(desc, func(t *testing.T) {
			if err := run(); err == nil {
				t.Fatal("want an error, got none")
			}
		})
	}
	t.Run("failed write leaves no file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "x.tar")
		img, _ := Pause([]byte("p"))
		_ = Write(file, map[string]v1.Image{"bad ref": img})
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("%s exists after a failed write", file)
		}
	})
}

// TestPauseExitsOnSIGTERM builds the real pause program and checks that it
// keeps running until SIGTERM and then exits 0, as the runtime expects when it
// stops a pod sandbox.
func TestPauseExitsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := BuildStatic(ctx, filepath.Join("..", ".."), "./test/images/pause")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(file, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(file)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("pause exited before any signal: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("pause exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("pause ignored SIGTERM")
	}
}
