package main

import (
	"encoding/json"
	"os"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/guestgate/guestgate/bench/load"
	"github.com/guestgate/guestgate/internal/testsupport"
)

func TestGHZSetupWritesTheServiceAndTheMixInOrder(t *testing.T) {
	next := func(w, i int) load.Request {
		return load.Request{Check: testsupport.CheckRequest("GET", "/w/"+string(rune('a'+w))+"/"+string(rune('a'+i%26)), "tok", "")}
	}
	protoset, data, err := ghzSetup(t.TempDir(), next, 4)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(protoset)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set) // every import is in the set
	if err != nil {
		t.Fatal(err)
	}
	if _, err := files.FindDescriptorByName("envoy.service.auth.v3.Authorization.Check"); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != ghzRequests {
		t.Fatalf("%d requests, want %d", len(raw), ghzRequests)
	}
	for _, i := range []int{0, 5, ghzRequests - 1} {
		var got authv3.CheckRequest
		if err := protojson.Unmarshal(raw[i], &got); err != nil {
			t.Fatal(err)
		}
		if want := next(i%4, i/4).Check; !proto.Equal(&got, want) {
			t.Errorf("request %d: %v, want %v", i, &got, want)
		}
	}
}

func TestGHZErrorsLeaveOutTheCallsCanceledAtTheEnd(t *testing.T) {
	r := ghzReport{
		StatusCodeDist: map[string]int{"OK": 90, "Canceled": 7, "Unavailable": 3},
		ErrorDist:      map[string]int{"rpc error: code = Canceled desc = closing": 7, "rpc error: code = Unavailable desc = gone": 3},
	}
	n, first := r.errors()
	if n != 3 || first != "rpc error: code = Unavailable desc = gone" {
		t.Fatalf("errors() = %d, %q", n, first)
	}
	if n, first := (ghzReport{StatusCodeDist: map[string]int{"OK": 5}}).errors(); n != 0 || first != "" {
		t.Fatalf("all OK: errors() = %d, %q", n, first)
	}
}
