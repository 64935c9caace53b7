package wiring

import (
	"testing"
	"time"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/state"
)

// The state: block maps onto the store's options; no block, no store.
func TestStateOptionsOfTheConfig(t *testing.T) {
	if o, err := StateOptionsOf(config.State{Backend: "embedded"}); o != nil || err != nil {
		t.Fatalf("no dir: %+v, %v; want no store", o, err)
	}
	o, err := StateOptionsOf(config.State{Backend: "redis", Timeout: config.Duration(time.Second), StaleBound: config.Duration(200 * time.Millisecond),
		Redis: config.StateRedis{Address: "unix:///run/redis.sock", Username: "gg", Password: "pw", DB: 2, KeyPrefix: "p:", PoolSize: 5,
			DialTimeout: config.Duration(2 * time.Second), TLS: &config.StateTLS{ServerName: "redis.internal"}}})
	if err != nil {
		t.Fatal(err)
	}
	r := o.Redis
	if o.Backend != state.BackendRedis || o.Timeout != time.Second || r.Address != "unix:///run/redis.sock" || r.Username != "gg" || r.Password != "pw" ||
		r.DB != 2 || r.KeyPrefix != "p:" || r.PoolSize != 5 || r.DialTimeout != 2*time.Second || r.TLS == nil || r.TLS.ServerName != "redis.internal" {
		t.Fatalf("options %+v", o)
	}
	if o.RevocationPoll >= o.StaleBound {
		t.Fatalf("revocation poll %v not under the stale bound %v", o.RevocationPoll, o.StaleBound)
	}
	if _, err := StateOptionsOf(config.State{Backend: "redis", Redis: config.StateRedis{Address: "r:6379", TLS: &config.StateTLS{CAFile: "/nonexistent/ca.pem"}}}); err == nil {
		t.Fatal("an unreadable CA file is not an error")
	}
	dir := t.TempDir()
	st, err := OpenState(&config.Config{State: config.State{Backend: "embedded", Dir: dir}}, StateOptions{})
	if err != nil || st == nil {
		t.Fatalf("embedded: %v", err)
	}
	if h := st.Health(); h.Backend != state.BackendEmbedded {
		t.Fatalf("health %+v", h)
	}
	st.Close()
}
