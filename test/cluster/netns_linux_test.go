package cluster

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newNetns makes a network namespace with only its loopback device up and a
// listener on it, held by a goroutine locked to its thread until the test
// ends (the namespace dies with the thread and the listener). It returns the
// namespace's path and the listener.
func newNetns(t *testing.T) (string, net.Listener) {
	t.Helper()
	type made struct {
		path string
		ln   net.Listener
		err  error
	}
	ch, done := make(chan made), make(chan struct{})
	go func() {
		// Never unlocked: the thread is in another namespace, so the runtime
		// must end it with this goroutine rather than reuse it.
		runtime.LockOSThread()
		fail := func(err error) { ch <- made{err: err} }
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			fail(fmt.Errorf("unshare(CLONE_NEWNET): %w", err))
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fail(err)
			return
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			fail(err)
			return
		}
		ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			fail(fmt.Errorf("bringing lo up: %w", err))
			return
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fail(err)
			return
		}
		ch <- made{path: fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), ln: ln}
		<-done
		ln.Close()
	}()
	m := <-ch
	if m.err != nil {
		t.Fatal(m.err)
	}
	t.Cleanup(func() { close(done) })
	return m.path, m.ln
}

// TestDialInNetns: a test outside the cluster's namespace reaches a server
// that listens only inside it, and the same address dialed normally does not
// reach that server.
func TestDialInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace needs root")
	}
	path, ln := newNetns(t)

	if in, err := inNetns(path); err != nil || in {
		t.Fatalf("inNetns(new namespace) = %v, %v; want false: the test runs outside it", in, err)
	}

	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	addr := ln.Addr().String()

	// Dialed normally, the address is the host's loopback: whatever answers
	// there (most likely nothing), it is not the namespace's listener.
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
	}
	select {
	case c := <-accepted:
		c.Close()
		t.Fatalf("a plain dial of %s reached the listener inside the namespace", addr)
	case <-time.After(300 * time.Millisecond):
	}

	dial := dialInNetns(path)
	for i := 0; i < 3; i++ { // more than once: the dialing thread went back to its own namespace
		c, err := dial(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatalf("dial %d in the namespace: %v", i, err)
		}
		var srv net.Conn
		select {
		case srv = <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatalf("dial %d: the namespace's listener accepted nothing", i)
		}
		if _, err := srv.Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "ok" {
			t.Fatalf("dial %d: read %q, %v; want \"ok\"", i, b, err)
		}
		c.Close()
		srv.Close()
	}

	if _, err := dial(t.Context(), "tcp", "localhost:80"); err == nil {
		t.Error("dialing a name in the namespace succeeded; want an error (only IP literals)")
	}
	// The thread that dialed (this goroutine's, which it has most likely
	// kept) must be back in its own namespace.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if in, err := inNetns(path); err != nil || in {
		t.Errorf("after dialing, this thread is in the namespace (%v, %v)", in, err)
	}
}
