package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
	"github.com/guestgate/guestgate/tokens"
)

// benchReplicas serves n in-process sidecars of the development setup on
// one store: embedded (n must be 1) or one redis-server. It returns a
// client of each and the call every iteration makes: a Kite command of the
// channel's owner, so the Check needs an ownership (one Require) besides
// the deny-list.
func benchReplicas(b *testing.B, backend string, n int) ([]authv3.AuthorizationClient, httpCall) {
	b.Helper()
	edit := map[string]string{}
	if backend == "redis" {
		redis, err := testsupport.StartRedis(b)
		if err != nil {
			b.Skip(err)
		}
		edit["  backend: embedded\n  dir: ../state"] = fmt.Sprintf("  backend: redis\n  redis:\n    address: %s", redis.Socket)
	}
	// Decisions unlogged, as production samples them: the figure is the
	// Check's and the store's, not the log's.
	edit["decision_log:\n  full: true"] = "decision_log:\n  full: false\n  deny_sample_rate: 0"
	_, cfgPath := testsupport.CopyDevelopment(b, edit)
	var clients []authv3.AuthorizationClient
	var key tokens.SigningKey
	for range n {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			b.Fatal(err)
		}
		if key, err = tokens.LoadSigningKey(cfg.Minting.XBS.KeyFiles[0]); err != nil {
			b.Fatal(err)
		}
		s, _, _ := runSidecar(b, cfg, nil)
		conn, err := grpc.NewClient(s.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		clients = append(clients, authv3.NewAuthorizationClient(conn))
	}
	claims := xbsClaims("W-DEMO")
	alice := (&e2e{t: b}).sign(key, "", claims)
	create := httpCall{method: "POST", path: commandPath("kite-bench", "CreateKiteChannelCommand"), token: alice}
	if ok := benchCheck(b, clients[0], create); !ok {
		b.Fatal("the owner's CreateKiteChannelCommand denied")
	}
	return clients, httpCall{method: "POST", path: commandPath("kite-bench", "MarkReadCommand"), token: alice}
}

func benchCheck(b *testing.B, c authv3.AuthorizationClient, call httpCall) bool {
	resp, err := c.Check(context.Background(), checkRequestFor(call))
	if err != nil {
		b.Fatal(err)
	}
	return resp.GetOkResponse() != nil
}

// BenchmarkCheckNeedingState is one gRPC Check of a Kite command in the
// visitor's own channel (the policy, the deny-list, one Require), on the
// embedded store and on Redis: the difference is what Redis adds.
func BenchmarkCheckNeedingState(b *testing.B) {
	for _, backend := range []string{"embedded", "redis"} {
		b.Run(backend, func(b *testing.B) {
			clients, call := benchReplicas(b, backend, 1)
			for b.Loop() {
				if !benchCheck(b, clients[0], call) {
					b.Fatal("denied")
				}
			}
		})
	}
}

// BenchmarkFleetThroughput is the same Check from parallel clients, spread
// over one replica or two sharing one Redis: checks per second of the
// fleet (ns/op is per check, all clients together).
func BenchmarkFleetThroughput(b *testing.B) {
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			clients, call := benchReplicas(b, "redis", n)
			var next atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := clients[int(next.Add(1))%len(clients)]
				for pb.Next() {
					if !benchCheck(b, c, call) {
						b.Error("denied")
						return
					}
				}
			})
		})
	}
}
