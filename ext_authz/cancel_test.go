package ext_authz

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/guestgate/guestgate/config"
	"github.com/guestgate/guestgate/internal/testsupport"
)

// sendingPolicy asks url (http.send) before it decides: its evaluation
// waits on a server the test holds, and fails the moment the check's
// context ends, as any evaluation does when its caller goes away.
func sendingPolicy(url string) string {
	return fmt.Sprintf(`package guestgate.authz

decision := http.send({"method": "GET", "url": %q, "timeout": "1h"}).status_code == 200
`, url)
}

// cancelChecker serves a checker whose policy waits on a server that
// answers only when release is closed, and tells entered each time the
// policy reaches it.
func cancelChecker(t *testing.T) (c *Checker, logs *testsupport.LogBuffer, decided chan *Decision, entered chan struct{}) {
	t.Helper()
	entered, release := make(chan struct{}, 16), make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(func() { close(release) })
	eng, dir := policyEngine(t, sendingPolicy(upstream.URL))
	cfg, err := config.Parse(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	logs = &testsupport.LogBuffer{}
	decided = make(chan *Decision, 16)
	c = New(Settings{Check: cfg.Check, DecisionLog: cfg.DecisionLog}, Options{
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		DecisionLog: slog.New(slog.DiscardHandler),
		Observer:    observerFunc(func(d *Decision) { decided <- d }),
	})
	c.SetEngine(eng)
	return c, logs, decided, entered
}

// TestCheckItsCallerCancelsIsNotAPolicyError: a check whose caller goes
// away while the policy evaluates (a real gRPC client on loopback that
// cancels) is denied with its own reason, canceled, status 499, logged at
// DEBUG, and counted apart from policy_error; a check past its caller's
// deadline is deadline_exceeded, 504, at INFO. Neither writes the WARN a
// broken policy gets. Under load every client that hung up looked like a
// broken policy.
func TestCheckItsCallerCancelsIsNotAPolicyError(t *testing.T) {
	c, logs, decided, entered := cancelChecker(t)
	client := authv3.NewAuthorizationClient(loopback(t, c.Register))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := client.Check(ctx, checkRequest("GET", "/x", map[string]string{"x-request-id": "cafe-01"}, ""))
		errc <- err
	}()
	<-entered // the policy is evaluating
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the canceled call answered")
	}
	d := <-decided
	if d.Allowed || d.Reason != ReasonCanceled || d.Status != StatusClientClosed {
		t.Fatalf("decided %v %d %s, want 499 canceled", d.Allowed, d.Status, d.Reason)
	}

	past, stop := context.WithDeadline(context.Background(), time.Unix(1, 0)) // long past, whatever the clock says
	defer stop()
	d = c.Decide(past, checkRequest("GET", "/x", map[string]string{"x-request-id": "dead-01"}, ""))
	<-decided
	if d.Allowed || d.Reason != ReasonDeadline || d.Status != http.StatusGatewayTimeout {
		t.Fatalf("decided %v %d %s, want 504 deadline_exceeded", d.Allowed, d.Status, d.Reason)
	}

	for id, level := range map[string]string{"cafe-01": "DEBUG", "dead-01": "INFO"} {
		var line string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, `"request_id":"`+id+`"`) {
				line = l
			}
		}
		if !strings.Contains(line, `"level":"`+level+`"`) || strings.Contains(line, "policy evaluation failed") {
			t.Errorf("%s: logged %q, want one %s line of its own", id, line, level)
		}
	}
	if strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("a WARN line:\n%s", logs)
	}
}
