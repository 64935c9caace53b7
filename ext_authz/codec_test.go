package ext_authz

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// decodesAsProto fails t unless unmarshalCheckRequest gives for b what
// proto.Unmarshal gives when request.http.body is a bytes field (as the
// codec takes it): both an error, or the same message.
func decodesAsProto(t testing.TB, name string, b []byte) {
	t.Helper()
	got := &authv3.CheckRequest{}
	errGot := unmarshalCheckRequest(b, got)
	want, ok, errWant := referenceDecode(b)
	if !ok {
		// The reflection decoder could not judge b: hold the codec to the
		// generated one, which refuses only what the codec refuses or a
		// body that is not UTF-8.
		want = &authv3.CheckRequest{}
		if errWant = proto.Unmarshal(b, want); errWant != nil && errGot == nil && !utf8.ValidString(got.GetAttributes().GetRequest().GetHttp().GetBody()) {
			return
		}
	}
	if (errWant == nil) != (errGot == nil) {
		t.Fatalf("%s: error %v, proto.Unmarshal's %v (bytes %x)", name, errGot, errWant, b)
	}
	if errWant == nil && !proto.Equal(want, got) {
		t.Fatalf("%s: decoded\n %v\nproto.Unmarshal decoded\n %v\n(bytes %x)", name, got, want, b)
	}
}

// referenceDecode is proto.Unmarshal of b with request.http.body a bytes
// field (bodyAsBytes), as a CheckRequest: its body set aside, the rest
// through the wire, the body put back as the string it is. The bool is false
// when the protobuf runtime's reflection decoder panics, as it does on a
// map entry whose key comes again with another wire type (proto/decode.go
// unmarshalMap reads the key as nil; the generated decoder skips it).
func referenceDecode(b []byte) (*authv3.CheckRequest, bool, error) {
	ref := dynamicpb.NewMessage(bodyAsBytes)
	panicked := false
	err := func() error {
		defer func() { panicked = recover() != nil }()
		return proto.Unmarshal(b, ref)
	}()
	if panicked {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	var body []byte
	http := ref.ProtoReflect()
	for _, f := range []protoreflect.Name{"attributes", "request", "http"} {
		fd := http.Descriptor().Fields().ByName(f)
		if !http.Has(fd) {
			http = nil
			break
		}
		http = http.Mutable(fd).Message()
	}
	if http != nil {
		fd := http.Descriptor().Fields().ByName("body")
		body = http.Get(fd).Bytes()
		http.Clear(fd)
	}
	wire, err := proto.Marshal(ref)
	if err != nil {
		panic(err)
	}
	want := &authv3.CheckRequest{}
	if err := proto.Unmarshal(wire, want); err != nil {
		panic(fmt.Sprintf("the reference does not decode as a CheckRequest: %v", err))
	}
	if len(body) > 0 {
		want.Attributes.Request.Http.Body = string(body)
	}
	return want, true, nil
}

// bodyAsBytes is CheckRequest's descriptor with request.http.body a bytes
// field rather than a string, so the protobuf runtime takes it as it is,
// UTF-8 or not: built from the generated descriptors, the attribute
// context's file amended.
var bodyAsBytes = func() protoreflect.MessageDescriptor {
	attrs := protodesc.ToFileDescriptorProto(authv3.File_envoy_service_auth_v3_attribute_context_proto)
	amended := false
	for _, m := range attrs.GetMessageType() {
		for _, n := range m.GetNestedType() {
			for _, f := range n.GetField() {
				if m.GetName() == "AttributeContext" && n.GetName() == "HttpRequest" && f.GetName() == "body" {
					f.Type, amended = descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum(), true
				}
			}
		}
	}
	if !amended {
		panic("AttributeContext.HttpRequest has no body field")
	}
	local := new(protoregistry.Files)
	af, err := protodesc.NewFile(attrs, protoregistry.GlobalFiles)
	if err == nil {
		err = local.RegisterFile(af)
	}
	if err != nil {
		panic(err)
	}
	check := protodesc.ToFileDescriptorProto(authv3.File_envoy_service_auth_v3_external_auth_proto)
	cf, err := protodesc.NewFile(check, amendedResolver{local})
	if err != nil {
		panic(err)
	}
	return cf.Messages().ByName("CheckRequest")
}()

// amendedResolver resolves names in its own files first, then in the
// generated ones.
type amendedResolver struct{ local *protoregistry.Files }

func (r amendedResolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if f, err := r.local.FindFileByPath(path); err == nil {
		return f, nil
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (r amendedResolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.local.FindDescriptorByName(name); err == nil {
		return d, nil
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}

func tag(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }

// field is one length-delimited field: tag, length, content.
func field(num protowire.Number, parts ...[]byte) []byte {
	var content []byte
	for _, p := range parts {
		content = append(content, p...)
	}
	return protowire.AppendBytes(tag(num, protowire.BytesType), content)
}

// inHTTP wraps HttpRequest fields in request.http in attributes.
func inHTTP(parts ...[]byte) []byte { return field(1, field(4, field(2, parts...))) }

func entry(key, value string) []byte { return field(3, field(1, []byte(key)), field(2, []byte(value))) }

func TestCheckCodecDecodesAsProto(t *testing.T) {
	realistic, err := proto.Marshal(sampleCheckRequest(rand.New(rand.NewPCG(1, 2)), 12))
	if err != nil {
		t.Fatal(err)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(num, protowire.VarintType), v)
	}
	for name, b := range map[string][]byte{
		"empty":                        nil,
		"realistic":                    realistic,
		"one header":                   inHTTP(entry("authorization", "Bearer x")),
		"a name twice: the last wins":  inHTTP(entry("a", "1"), entry("b", "2"), entry("a", "3")),
		"http twice: merged":           append(inHTTP(entry("a", "1"), field(4, []byte("/p"))), inHTTP(entry("a", "2"), entry("c", "3"))...),
		"headers between other fields": inHTTP(field(1, []byte("id")), entry("a", "1"), field(2, []byte("GET")), entry("b", "2"), varint(12, 10)),
		"entry without a value":        inHTTP(field(3, field(1, []byte("a")))),
		"entry without a key":          inHTTP(field(3, field(2, []byte("v")))),
		"empty entry":                  inHTTP(field(3)),
		"key twice in an entry":        inHTTP(field(3, field(1, []byte("a")), field(1, []byte("b")), field(2, []byte("v")))),
		"unknown field in an entry":    inHTTP(field(3, field(1, []byte("a")), varint(7, 1), field(2, []byte("v")))),
		"key of another wire type":     inHTTP(field(3, varint(1, 5), field(2, []byte("v")))),
		"headers as a varint":          inHTTP(varint(3, 1), entry("a", "1")),
		"attributes as a varint":       append(varint(1, 1), inHTTP(entry("a", "1"))...),
		"request as a fixed64":         field(1, protowire.AppendFixed64(tag(4, protowire.Fixed64Type), 9)),
		"only headers in http":         inHTTP(entry("x", "y")),
		"invalid UTF-8 name":           inHTTP(entry("a\xff", "1")),
		"invalid UTF-8 value":          inHTTP(entry("a", "\xc3\x28")),
		"invalid UTF-8 key, then fine": inHTTP(field(3, field(1, []byte("\xff")), field(1, []byte("a")))),
		"invalid UTF-8 elsewhere":      inHTTP(field(4, []byte("/\xff"))),
		"invalid UTF-8 body":           inHTTP(entry("a", "1"), field(11, []byte("{\"to\xc0PersonId\":1}"))),
		"body only":                    inHTTP(field(11, []byte("\xff"))),
		"body twice: the last wins":    inHTTP(field(11, []byte("\xff")), entry("a", "1"), field(11, []byte("ok"))),
		"empty body after a body":      inHTTP(field(11, []byte("x")), field(11, nil)),
		"body as a varint":             inHTTP(varint(11, 3)),
		"body cut short":               inHTTP(append(tag(11, protowire.BytesType), 0x05, 'a')),
		"truncated entry":              inHTTP(field(3, []byte{0x0a, 0x05, 'a'})),
		"truncated header length":      field(1, field(4, append(tag(2, protowire.BytesType), 0x80))),
		"field number zero in entry":   inHTTP(field(3, []byte{0x02, 0x00})),
		"field number zero on top":     {0x02, 0x00},
		"field number too large":       inHTTP(field(3, protowire.AppendVarint(protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3), 0))),
		"group in an entry":            inHTTP(field(3, tag(9, protowire.StartGroupType), tag(9, protowire.EndGroupType), field(1, []byte("a")))),
		"unmatched end group in entry": inHTTP(field(3, tag(9, protowire.EndGroupType))),
		"unmatched end group on top":   tag(5, protowire.EndGroupType),
		"unknown top-level field":      append(field(99, []byte("x")), inHTTP(entry("a", "1"))...),
		"padded length":                append(append(tag(1, protowire.BytesType), 0x83, 0x00), field(4, []byte{})...),
		"context extensions map":       field(1, field(10, field(1, []byte("k")), field(2, []byte("v")))),
		"many headers": inHTTP(func() (b []byte) {
			for i := range 300 {
				b = append(b, entry(fmt.Sprintf("x-h-%d", i), "v")...)
			}
			return b
		}()),
	} {
		decodesAsProto(t, name, b)
	}
}

// TestCheckCodecDecodesMutatedRequestsAsProto: realistic requests, then
// the same with bytes flipped, cut, inserted and spliced, decode as the
// protobuf runtime decodes them.
func TestCheckCodecDecodesMutatedRequestsAsProto(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 3000 {
		b, err := proto.Marshal(sampleCheckRequest(r, r.IntN(20)))
		if err != nil {
			t.Fatal(err)
		}
		decodesAsProto(t, fmt.Sprint("request ", i), b)
		decodesAsProto(t, fmt.Sprint("mutated request ", i), mutate(r, b))
	}
}

func mutate(r *rand.Rand, b []byte) []byte {
	b = append([]byte(nil), b...)
	for range 1 + r.IntN(3) {
		if len(b) == 0 {
			return b
		}
		switch i := r.IntN(len(b)); r.IntN(4) {
		case 0:
			b[i] ^= byte(1 << r.IntN(8))
		case 1:
			b = b[:i]
		case 2:
			b = append(b[:i], append([]byte{byte(r.IntN(256))}, b[i:]...)...)
		default:
			j := r.IntN(len(b))
			b = append(b[:i:i], b[j:]...)
		}
	}
	return b
}

// sampleCheckRequest is a CheckRequest as Envoy sends one, with n headers
// (some names repeated in other letters' places, some values not ASCII).
func sampleCheckRequest(r *rand.Rand, n int) *authv3.CheckRequest {
	headers := map[string]string{":method": "POST", ":path": "/conversations/GetTokenCommand", "authorization": "Bearer a.b.c"}
	for i := range n {
		headers[fmt.Sprintf("x-h-%d", r.IntN(n+1))] = fmt.Sprintf("välue %d ✓", i)
	}
	meta, _ := structpb.NewStruct(map[string]any{"k": "v"})
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: "spiffe://x"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "POST", Headers: headers, Path: "/conversations/GetTokenCommand", Host: "chat.example",
			Body: `{"a":1}`, RawBody: []byte{0, 1, 2}, Size: 7,
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "k", Value: "v"}}},
		}},
		ContextExtensions: map[string]string{"route": "chat"},
		MetadataContext:   &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"f": meta}},
	}}
}

// FuzzCheckRequestCodec holds the codec to proto.Unmarshal's answer for
// any bytes.
func FuzzCheckRequestCodec(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 5))
	for n := range 4 {
		b, err := proto.Marshal(sampleCheckRequest(r, n*3))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(append(inHTTP(entry("a", "1")), inHTTP(entry("a", "2"))...))
	f.Add(inHTTP(field(3, field(1, []byte("\xff")), field(1, []byte("a")))))
	f.Fuzz(func(t *testing.T, b []byte) { decodesAsProto(t, "fuzz", b) })
}

// TestGRPCServerDecodesHeadersWithTheCheckCodec: over a real connection, the
// server's codec hands the check the headers the client sent, and answers
// a request the protobuf runtime would refuse with the same gRPC error.
func TestGRPCServerDecodesHeadersWithTheCheckCodec(t *testing.T) {
	got := make(chan map[string]string, 1)
	conn := loopback(t, func(s *grpc.Server) { authv3.RegisterAuthorizationServer(s, recordHeaders(got)) })
	ctx := context.Background()

	req := sampleCheckRequest(rand.New(rand.NewPCG(1, 1)), 8)
	if _, err := authv3.NewAuthorizationClient(conn).Check(ctx, req); err != nil {
		t.Fatal(err)
	}
	if h := <-got; fmt.Sprint(h) != fmt.Sprint(req.Attributes.Request.Http.Headers) {
		t.Fatalf("server saw headers %v, client sent %v", h, req.Attributes.Request.Http.Headers)
	}

	// Raw bytes with a header name that is not UTF-8: refused, not checked.
	bad := inHTTP(entry("a\xff", "1"))
	err := conn.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", rawMessage(bad), &authv3.CheckResponse{}, grpc.ForceCodecV2(rawCodec{}))
	if status.Code(err) != codes.Internal {
		t.Fatalf("a header name that is not UTF-8: %v, want Internal", err)
	}
	select {
	case h := <-got:
		t.Fatalf("the check ran with %v", h)
	default:
	}
}

// recordHeaders is an Authorization server that passes on the headers of
// each Check.
type recordHeaders chan map[string]string

func (r recordHeaders) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	r <- req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	return &authv3.CheckResponse{}, nil
}

// rawMessage is a request's wire bytes, sent as they are with rawCodec.
type rawMessage []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawMessage))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (rawCodec) Name() string { return "proto" }

// BenchmarkDecodeCheckRequest decodes a CheckRequest with Envoy's usual
// headers: "proto" with the protobuf runtime alone, "codec" as the server
// does.
func BenchmarkDecodeCheckRequest(b *testing.B) {
	req := sampleCheckRequest(rand.New(rand.NewPCG(1, 2)), 0)
	for k, v := range map[string]string{
		":authority": "chat.example", ":scheme": "https", "accept": "*/*", "accept-encoding": "gzip, br",
		"content-type": "application/json", "content-length": "42", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)",
		"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https", "x-request-id": "0b1f6c5e-7a3d-4c2b-9e8f-1a2b3c4d5e6f",
		"x-envoy-expected-rq-timeout-ms": "15000", "origin": "https://www.example", "referer": "https://www.example/help",
	} {
		req.Attributes.Request.Http.Headers[k] = v
	}
	wire, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := proto.Unmarshal(wire, &authv3.CheckRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := unmarshalCheckRequest(wire, &authv3.CheckRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
