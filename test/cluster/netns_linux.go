package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns reports whether the calling thread's network namespace is the one
// at path (nsfs files of one namespace share device and inode). The thread,
// not /proc/self (the main thread's), since threads can differ.
func inNetns(path string) (bool, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var self, ns unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &self); err != nil {
		return false, err
	}
	if err := unix.Stat(path, &ns); err != nil {
		return false, err
	}
	return self.Dev == ns.Dev && self.Ino == ns.Ino, nil
}

// dialInNetns returns a DialContext whose sockets live in the network
// namespace at path. A socket belongs to the namespace of the thread that
// creates it (socket(7), setns(2)), so the dialing goroutine is pinned to its
// thread, which enters the namespace for the dial and then returns to its
// own; the connection stays in the cluster's namespace afterwards. Only IP
// literals: a name with addresses of both families would be dialed from
// other goroutines (net.Dialer's Happy Eyeballs), outside the namespace.
func dialInNetns(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if net.ParseIP(host) == nil {
			return nil, fmt.Errorf("dialing %s in network namespace %s: only IP addresses can be dialed there", addr, path)
		}
		target, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer target.Close()
		runtime.LockOSThread()
		own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			return nil, err
		}
		defer own.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return nil, fmt.Errorf("entering network namespace %s: %w", path, err)
		}
		var d net.Dialer
		conn, dialErr := d.DialContext(ctx, network, addr)
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked, so the runtime ends it with its
			// goroutine instead of reusing it in the wrong namespace.
			if conn != nil {
				conn.Close()
			}
			return nil, fmt.Errorf("returning from network namespace %s: %w", path, err)
		}
		runtime.UnlockOSThread()
		return conn, dialErr
	}
}
