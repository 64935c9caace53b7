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

func TestGHZErrorsLeaveOutTheCallsEndedAtItsClose(t *testing.T) {
	r := ghzReport{ErrorDist: map[string]int{
		"rpc error: code = Canceled desc = grpc: the client connection is closing": 7,
		"rpc error: code = Unavailable desc = transport is closing":                5,
		"rpc error: code = Unavailable desc = connection refused":                  3,
		"rpc error: code = Internal desc = boom":                                   1,
	}}
	n, atClose, first := r.errors()
	if n != 4 || atClose != 12 || first != "rpc error: code = Unavailable desc = connection refused" {
		t.Fatalf("errors() = %d, %d, %q", n, atClose, first)
	}
	if n, atClose, first := (ghzReport{}).errors(); n != 0 || atClose != 0 || first != "" {
		t.Fatalf("no errors: errors() = %d, %d, %q", n, atClose, first)
	}
}
