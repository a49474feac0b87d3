//go:build !linux

package cluster

import (
	"context"
	"errors"
	"net"
)

var errNoNetns = errors.New("network namespaces need Linux")

func inNetns(string) (bool, error) { return false, errNoNetns }

func dialInNetns(string) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errNoNetns }
}
