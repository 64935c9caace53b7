package testsupport

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// CheckRequest is a CheckRequest as Envoy sends it: source and
// destination, the usual headers, and the bearer token when tok is not
// empty.
func CheckRequest(method, path, tok, body string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority":        "chat.example.com",
		":method":           method,
		":path":             path,
		":scheme":           "https",
		"accept":            "application/json",
		"user-agent":        "Mozilla/5.0 (X11; Linux x86_64) guestgate-bench",
		"x-forwarded-proto": "https",
		"x-request-id":      "0b1f6c5e-7a3d-4c2b-9e8f-1a2b3c4d5e6f",
	}
	if tok != "" {
		headers["authorization"] = "Bearer " + tok
	}
	if body != "" {
		headers["content-type"] = "application/json"
		headers["content-length"] = fmt.Sprint(len(body))
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      peer("10.0.0.7", 51234),
		Destination: peer("10.0.0.1", 8080),
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "4711", Method: method, Path: path, Host: "chat.example.com", Scheme: "https",
			Protocol: "HTTP/1.1", Headers: headers, Body: body, Size: int64(len(body)),
		}},
	}}
}

func peer(addr string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
	}}}
}
