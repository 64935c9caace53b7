// Command guestgate-floor is the benchmark's floor: an ext_authz gRPC server
// on the same gRPC stack and server options as guestgate that answers every
// Check with OK and does nothing else. The load test runs against it and
// against guestgate in turn; guestgate's throughput is reported as a
// fraction of this one's.
//
// It logs one JSON line when it serves, as guestgate does, naming the gRPC
// address ("grpc"), so a harness can start it on port 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/ext_authz"
)

type floor struct {
	authv3.UnimplementedAuthorizationServer
}

// ok is the whole answer: allowed, nothing added or removed.
var ok = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: int32(code.Code_OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (floor) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return ok, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "gRPC listen address")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := grpc.NewServer(ext_authz.ServerOptions(config.DefaultMaxMessageBytes)...)
	authv3.RegisterAuthorizationServer(srv, floor{})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	logger.Info("floor serving", "grpc", lis.Addr().String())
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
