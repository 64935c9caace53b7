package ext_authz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// checkCodec is the gRPC server's codec: gRPC's own proto codec, except
// that a CheckRequest's HTTP headers and body are decoded here. The
// protobuf runtime decodes a map<string,string> through reflection, several
// allocations per entry, and with Envoy's headers that map was a third of
// the server's work per Check before the policy ran. Everything else is
// still decoded by the protobuf runtime: the headers and the body are taken
// out of the wire bytes, the rest unmarshalled as ever, and the headers put
// in the map as the runtime would (a later entry of the same name wins; a
// key or value that is not UTF-8 is an error).
//
// The body (request.http.body) is taken as the bytes it is, UTF-8 or not,
// where the runtime refuses the whole message: Envoy fills that string
// field with the raw body (with_request_body, pack_as_bytes: false), so a
// binary upload or a text body cut inside a character would be a gRPC
// error rather than a CheckResponse. The check reads it as it reads
// raw_body, and refuses a JSON or form body that is not UTF-8 (bad_body).
// FuzzCheckRequestCodec and TestCheckCodecDecodesAsProto hold it to what
// proto.Unmarshal answers with that field as bytes.
type checkCodec struct{ encoding.CodecV2 }

func newCheckCodec() checkCodec {
	return checkCodec{encoding.GetCodecV2(protocodec.Name)}
}

func (c checkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*authv3.CheckRequest)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return unmarshalCheckRequest(buf.ReadOnlyData(), req)
}

// The path from a CheckRequest to its HTTP headers, as field numbers read
// from the generated descriptors: attributes.request.http.headers; and the
// number of the body beside them, attributes.request.http.body.
var headersPath, bodyNumber = func() ([4]protowire.Number, protowire.Number) {
	var path [4]protowire.Number
	md := (&authv3.CheckRequest{}).ProtoReflect().Descriptor()
	for i, name := range []protoreflect.Name{"attributes", "request", "http", "headers"} {
		fd := md.Fields().ByName(name)
		if fd == nil || fd.Cardinality() == protoreflect.Repeated && !fd.IsMap() {
			panic(fmt.Sprintf("ext_authz: CheckRequest has no field %s on the path to the headers", name))
		}
		path[i] = fd.Number()
		if i < 3 {
			md = fd.Message()
		} else if !fd.IsMap() || fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind {
			panic("ext_authz: the CheckRequest headers are not a map<string,string>")
		}
	}
	body := md.Fields().ByName("body")
	if body == nil || body.Kind() != protoreflect.StringKind || body.Cardinality() == protoreflect.Repeated {
		panic("ext_authz: the CheckRequest's HTTP request has no string body")
	}
	return path, body.Number()
}()

var (
	errDecode = errors.New("ext_authz: CheckRequest: bad wire format")
	errUTF8   = errors.New("ext_authz: CheckRequest: a header name or value is not UTF-8")
)

// unmarshalCheckRequest is proto.Unmarshal(b, req), with the headers map
// decoded here.
func unmarshalCheckRequest(b []byte, req *authv3.CheckRequest) error {
	d := headerDecoders.Get().(*headerDecoder)
	defer d.release()
	rest := mem.DefaultBufferPool().Get(len(b))
	defer mem.DefaultBufferPool().Put(rest)
	out, err := d.strip((*rest)[:0], b, 0)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(out, req); err != nil {
		return err
	}
	if len(d.entries) == 0 && !d.hasBody {
		return nil
	}
	// Entries and the body were only taken from inside an http field, which
	// the remaining bytes still hold (emptied), so the message is there.
	http := req.GetAttributes().GetRequest().GetHttp()
	if http == nil {
		return errDecode
	}
	if d.hasBody {
		http.Body = string(d.body)
	}
	if len(d.entries) == 0 {
		return nil
	}
	headers := make(map[string]string, len(d.entries))
	for _, e := range d.entries {
		headers[headerName(e.key)] = string(e.value)
	}
	http.Headers = headers
	return nil
}

// headerDecoder takes the header map's entries and the body out of a
// CheckRequest's wire bytes.
type headerDecoder struct {
	entries []headerEntry
	body    []byte // the last body field, in b (not copied)
	hasBody bool
}

// headerDecoders recycles decoders and their entries.
var headerDecoders = sync.Pool{New: func() any { return &headerDecoder{entries: make([]headerEntry, 0, 32)} }}

// release returns d to headerDecoders, holding no request's bytes; one
// grown by a request with very many headers is left to the collector.
func (d *headerDecoder) release() {
	if cap(d.entries) > 256 {
		return
	}
	clear(d.entries)
	d.entries, d.body, d.hasBody = d.entries[:0], nil, false
	headerDecoders.Put(d)
}

// headerEntry is one map entry's key and value, in b (not copied).
type headerEntry struct{ key, value []byte }

// strip appends to out the message b at depth (0: the CheckRequest) less
// its header entries, which go to d.entries in wire order. Every other
// field is copied as it came, to be decoded by the protobuf runtime, which
// also reports its errors; the fields on the path to the headers are
// copied with the lengths of what is left in them.
func (d *headerDecoder) strip(out, b []byte, depth int) ([]byte, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return nil, errDecode
		}
		if depth == len(headersPath)-1 && num == bodyNumber && typ == protowire.BytesType {
			// The body, as bytes; a later one wins, as in the runtime.
			v, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return nil, errDecode
			}
			d.body, d.hasBody = v, true
			b = b[n+m:]
			continue
		}
		if num != headersPath[depth] || typ != protowire.BytesType {
			// Not on the path (or not as a message, which the runtime keeps
			// as an unknown field): as it came.
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return nil, errDecode
			}
			out = append(out, b[:n+m]...)
			b = b[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, errDecode
		}
		b = b[n+m:]
		if depth == len(headersPath)-1 {
			e, err := mapEntry(v)
			if err != nil {
				return nil, err
			}
			d.entries = append(d.entries, e)
			continue
		}
		// A message on the path: its tag, room for its length, what is left
		// of it, then its length. What is left is never longer than what
		// came, so the room is enough; a shorter length moves it down.
		out = protowire.AppendTag(out, num, protowire.BytesType)
		at, room := len(out), protowire.SizeVarint(uint64(len(v)))
		var err error
		out, err = d.strip(append(out, make([]byte, room)...), v, depth+1)
		if err != nil {
			return nil, err
		}
		size := len(out) - at - room
		var prefix [binary.MaxVarintLen64]byte
		p := protowire.AppendVarint(prefix[:0], uint64(size))
		copy(out[at:], p)
		if len(p) < room {
			copy(out[at+len(p):], out[at+room:])
			out = out[:len(out)-(room-len(p))]
		}
	}
	return out, nil
}

// mapEntry decodes one map<string,string> entry as the protobuf runtime
// does: fields 1 (key) and 2 (value), each empty when absent and the last
// one winning when repeated, each UTF-8; anything else, or a key or value
// of another wire type, skipped as unknown.
func mapEntry(b []byte) (headerEntry, error) {
	var e headerEntry
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return e, errDecode
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return e, errDecode
			}
			// Each occurrence is checked, as the runtime decodes each.
			if !utf8.Valid(v) {
				return e, errUTF8
			}
			if num == 1 {
				e.key = v
			} else {
				e.value = v
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return e, errDecode
		}
		b = b[m:]
	}
	return e, nil
}

// commonHeaders are names Envoy sends on most requests: the map's keys
// share these strings instead of each request allocating its own.
var commonHeaders = func() map[string]string {
	m := map[string]string{}
	for _, name := range []string{
		":authority", ":method", ":path", ":scheme", "accept", "accept-encoding", "accept-language",
		"authorization", "cache-control", "content-length", "content-type", "cookie", "origin", "referer",
		"user-agent", "x-envoy-expected-rq-timeout-ms", "x-envoy-internal", "x-envoy-original-path",
		"x-forwarded-for", "x-forwarded-proto", "x-request-id", "x-real-ip", "traceparent", "tracestate",
		"sec-fetch-mode", "sec-fetch-site", "sec-fetch-dest", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform",
		"if-none-match", "if-modified-since", "pragma", "priority", "te", "upgrade", "connection",
	} {
		m[name] = name
	}
	return m
}()

// headerName is key as a string, shared when it is a common name.
func headerName(key []byte) string {
	if s, ok := commonHeaders[string(key)]; ok { // no allocation for the lookup
		return s
	}
	return string(key)
}
