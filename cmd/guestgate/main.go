// Command guestgate is the guestgate sidecar and its small tools.
//
//	guestgate serve [--config FILE]       run the sidecar (no --config: the development setup)
//	guestgate check --request FILE        evaluate one CheckRequest (offline, or --addr a running server)
//	guestgate validate --config FILE      check a config and its policies without serving
//	guestgate mint KIND ...               mint a guest, sat, access or (development) xbs-anonymous token
//	guestgate sign-request ...            print the X-Frame-* headers of a SAT API request
//	guestgate revoke ...                  add to the deny-list of a running guestgate
//	guestgate version                     print the version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit code. A bare guestgate
// prints its usage and exits 2, as opa does: someone finding out what it
// does should not find it serving on the default ports. Only
// `guestgate serve` serves.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "serve":
		err = serveCmd(args, stderr)
	case "check":
		err = checkCmd(args, stdin, stdout, stderr)
	case "validate":
		err = validateCmd(args, stdout)
	case "mint":
		err = mintCmd(args, stdin, stdout, stderr)
	case "sign-request":
		err = signRequestCmd(args, stdin, stdout, stderr)
	case "revoke":
		err = revokeCmd(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		if strings.HasPrefix(cmd, "-") {
			fmt.Fprintf(stderr, "guestgate: a command comes first (guestgate serve %s ...)\n%s", cmd, usage)
			return 2
		}
		fmt.Fprintf(stderr, "guestgate: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintln(stderr, "guestgate:", err)
		return 1
	}
	return 0
}

const usage = `usage:
  guestgate serve [--config FILE]        run the sidecar; with no --config, the development setup
  guestgate check --request FILE [--addr HOST:PORT] [--token-file FILE|-] [--config FILE]
                [--shadow DIR] [--explain] [--print-input] [--format text|json]
                                         evaluate one CheckRequest (JSON, as Envoy sends it):
                                         against a running server with --addr, else offline;
                                         offline, beside a candidate policy (--shadow), with
                                         the rule lines that decided (--explain) and the input
  guestgate validate --config FILE       check a config and its policies without serving
  guestgate mint (guest|sat|access|xbs-anonymous) ...
                                         mint a token (guestgate mint, alone, lists the flags)
  guestgate sign-request --client-id ID (--secret-env VAR|--secret-file FILE|--secret-stdin)
                                         print the X-Frame-* headers of a SAT API request
  guestgate revoke (--jti ID | --subject SUB --issuer ISS | --widget ID)
                (--token-file FILE|--token-env VAR) [--admin URL]
                                         add to the deny-list through a running guestgate
  guestgate version                      print the version
`

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		v += " " + bi.GoVersion
	}
	return "guestgate " + v
}
