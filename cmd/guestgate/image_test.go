package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The image as `make image` builds it. Containers cannot run in this
// sandbox (crun cannot set rlimits here), so the test does what a runtime
// would without one: it reads the image's config as the registry holds it
// (an OCI layout pushed from the builder's store), unpacks its layers into
// a root filesystem, and runs its binary chrooted there as the image's
// user, with the image's own config and policies.
//
// Cost: the static build of cmd/guestgate (cached after the first run:
// ~10 s; a cold cache compiles every dependency once more, a minute or
// two on 2 cores) and the build itself (~15 s) in a store of its own under
// the test's temporary directory, so it leaves no image behind.

const (
	imageUser   = "65532:65532"
	imageConfig = "/etc/guestgate/guestgate.yaml"
	imagePolicy = "/etc/guestgate/policies"
	imageBinary = "/usr/local/bin/guestgate"
	// imageState is the example config's state.dir: the one directory
	// the user owns, a volume.
	imageState   = "/var/lib/guestgate/state"
	imageVersion = "9.8.7-imagetest"
)

// builder is Debian's podman, else its buildah; "" when neither is here.
func builder() string {
	for _, b := range []string{"podman", "buildah"} {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	return ""
}

// builtImage runs `make image` into a store under dir and returns the
// image's config and its unpacked root filesystem (with each entry's tar
// header, as the image states owner and mode).
func builtImage(t *testing.T, bin, dir string) (*ocispec.Image, string, map[string]*tar.Header) {
	t.Helper()
	store := []string{bin, "--root", filepath.Join(dir, "store"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}
	ref := "localhost/guestgate-imagetest:" + imageVersion
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	mk := exec.CommandContext(ctx, "make", "image", "IMAGE="+ref, "VERSION="+imageVersion, "BUILDER="+strings.Join(store, " "))
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	layout := filepath.Join(dir, "oci")
	push := exec.CommandContext(ctx, store[0], append(store[1:], "push", ref, "oci:"+layout+":test")...)
	if out, err := push.CombinedOutput(); err != nil {
		t.Fatalf("push to an OCI layout: %v\n%s", err, out)
	}

	var index ocispec.Index
	readJSON(t, filepath.Join(layout, "index.json"), &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index holds %d manifests, want 1", len(index.Manifests))
	}
	var manifest ocispec.Manifest
	readJSON(t, blobPath(layout, string(index.Manifests[0].Digest)), &manifest)
	var img ocispec.Image
	readJSON(t, blobPath(layout, string(manifest.Config.Digest)), &img)

	rootfs := filepath.Join(dir, "rootfs")
	headers := map[string]*tar.Header{}
	for _, l := range manifest.Layers {
		unpackLayer(t, blobPath(layout, string(l.Digest)), l.MediaType, rootfs, headers)
	}
	return &img, rootfs, headers
}

func blobPath(layout, digest string) string {
	algo, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(layout, "blobs", algo, hex)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// unpackLayer extracts one layer as a runtime would (a FROM scratch image
// of COPY steps has no whiteouts; one would fail here).
func unpackLayer(t *testing.T, path, mediaType, rootfs string, headers map[string]*tar.Header) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	switch mediaType {
	case ocispec.MediaTypeImageLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip":
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	case ocispec.MediaTypeImageLayer:
	default:
		t.Fatalf("layer media type %s", mediaType)
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		name := "/" + strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		if strings.HasPrefix(filepath.Base(name), ".wh.") {
			t.Fatalf("layer whiteout %s: the image should be COPY steps only", name)
		}
		headers[name] = h
		dst := filepath.Join(rootfs, name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
				var out *os.File
				if out, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(h.Mode)&fs.ModePerm); err == nil {
					_, err = io.Copy(out, tr)
					out.Close()
				}
			}
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, dst)
		default:
			t.Fatalf("%s: tar entry type %c", name, h.Typeflag)
		}
		if err == nil && h.Typeflag != tar.TypeSymlink {
			err = os.Chmod(dst, fs.FileMode(h.Mode)&fs.ModePerm)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// inImage runs the image's binary chrooted into rootfs as the image's
// user, with env only (a container's environment), and returns its exit
// code and output.
func inImage(t *testing.T, rootfs string, env []string, stdin string, argv ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	if os.Geteuid() != 0 {
		// Without root, a user namespace lends the chroot; the image's
		// user is this user there.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 65532, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 65532, HostID: os.Getgid(), Size: 1}}
	}
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errOut.String()
	case err != nil:
		t.Fatalf("run %v in the image: %v", argv, err)
	}
	return 0, out.String(), errOut.String()
}

func TestImageAsMakeImageBuildsIt(t *testing.T) {
	bin := builder()
	if bin == "" {
		t.Skip("neither podman nor buildah is installed (Debian: apt-get install podman; .ci/run installs it): skipping the image test")
	}
	repoRoot(t)
	// Not t.TempDir: the builder refuses a run root of more than 50
	// characters, and a test's directory name is longer.
	dir, err := os.MkdirTemp("", "gg-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	img, rootfs, headers := builtImage(t, bin, dir)
	entry := append(slices.Clone(img.Config.Entrypoint), img.Config.Cmd...)

	t.Run("config: user, entrypoint, ports and labels", func(t *testing.T) {
		c := img.Config
		if c.User != imageUser {
			t.Errorf("user %q, want %q (non-root, numeric: no /etc/passwd to look a name up in)", c.User, imageUser)
		}
		if want := []string{imageBinary, "serve", "--config", imageConfig}; !slices.Equal(entry, want) {
			t.Errorf("entrypoint+cmd %q, want %q", entry, want)
		}
		var ports []string
		for p := range c.ExposedPorts {
			ports = append(ports, p)
		}
		sort.Strings(ports)
		if want := []string{"8181/tcp", "8282/tcp", "9191/tcp"}; !slices.Equal(ports, want) {
			t.Errorf("exposed ports %v, want %v", ports, want)
		}
		rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range map[string]string{
			ocispec.AnnotationVersion:  imageVersion,
			ocispec.AnnotationRevision: strings.TrimSpace(string(rev)),
			ocispec.AnnotationSource:   "https://github.com/guestgate/guestgate",
			ocispec.AnnotationTitle:    "guestgate",
		} {
			if got := c.Labels[k]; got != want {
				t.Errorf("label %s = %q, want %q", k, got, want)
			}
		}
		if img.OS != "linux" {
			t.Errorf("os %q", img.OS)
		}
		if _, ok := c.Volumes[imageState]; !ok || len(c.Volumes) != 1 {
			t.Errorf("volumes %v, want %s alone (writable under a read-only root)", c.Volumes, imageState)
		}
	})

	t.Run("root filesystem: the binary, the config, the policies, nothing else, none of it writable by the user", func(t *testing.T) {
		var policies []string
		err := filepath.WalkDir("policies", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if ext := filepath.Ext(p); (ext == ".rego" && !strings.HasSuffix(p, "_test.rego")) || ext == ".json" || ext == ".yaml" {
				policies = append(policies, "/etc/guestgate/"+p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := append([]string{imageBinary, imageConfig}, policies...)
		sort.Strings(want)
		var files []string
		for name, h := range headers {
			if name == imageState {
				if h.Typeflag != tar.TypeDir || h.Uid != 65532 || h.Mode&0o777 != 0o700 {
					t.Errorf("%s: type %c, owner %d, mode %o; want the user's own directory, 0700", name, h.Typeflag, h.Uid, h.Mode)
				}
				continue
			}
			if h.Typeflag != tar.TypeDir {
				files = append(files, name)
			}
			if h.Uid != 0 || h.Mode&0o022 != 0 {
				t.Errorf("%s: owner %d, mode %o: the user could change it", name, h.Uid, h.Mode)
			}
		}
		sort.Strings(files)
		if !slices.Equal(files, want) {
			t.Errorf("files in the image:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
		}
		example, err := os.ReadFile("config/guestgate.example.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(rootfs, imageConfig)); err != nil || !bytes.Equal(got, example) {
			t.Errorf("%s is not config/guestgate.example.yaml (%v)", imageConfig, err)
		}
	})

	t.Run("binary: static, with the fallback roots, of the version labelled", func(t *testing.T) {
		path := filepath.Join(rootfs, imageBinary)
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("program header %v: the binary is not static and cannot run FROM scratch", p.Type)
			}
		}
		bi, err := buildinfo.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(bi.Deps, func(m *debug.Module) bool { return m.Path == "golang.org/x/crypto/x509roots/fallback" }) {
			t.Error("no golang.org/x/crypto/x509roots/fallback: with no /etc/ssl in the image, https to a JWKS URL would fail")
		}
		code, out, errOut := inImage(t, rootfs, nil, "", imageBinary, "version")
		if code != 0 || !strings.HasPrefix(out, "guestgate "+imageVersion+" ") {
			t.Errorf("guestgate version in the image: exit %d, %q %q", code, out, errOut)
		}
	})

	t.Run("the default command without its secrets says what it needs", func(t *testing.T) {
		code, _, errOut := inImage(t, rootfs, nil, "", entry...)
		if code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", code, errOut)
		}
		for _, want := range []string{"GUESTGATE_ACME_GUEST_SECRET: not set", "GUESTGATE_ACME_BACKEND_SECRET: not set", "/etc/guestgate/keys/sat-2026-11.pem"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr does not say %q:\n%s", want, errOut)
			}
		}
		if strings.Contains(errOut, imagePolicy+":") {
			t.Errorf("the image's own policies are missing:\n%s", errOut)
		}
	})

	t.Run("with its secrets, it decides with its own config and policies", func(t *testing.T) {
		// As a Secret volume and env would provide them.
		keys := filepath.Join(rootfs, "etc/guestgate/keys")
		if err := os.Mkdir(keys, 0o755); err != nil {
			t.Fatal(err)
		}
		writeExampleKeys(t, keys)
		env := []string{
			"GUESTGATE_ACME_GUEST_SECRET=c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=",
			"GUESTGATE_ACME_BACKEND_SECRET=" + strings.Repeat("s", 40),
		}
		code, token, errOut := inImage(t, rootfs, env, "", imageBinary, "mint", "guest", "--issuer", "acme-guest-issuer-id", "--sub", "visitor-1", "--secret-env", "GUESTGATE_ACME_GUEST_SECRET")
		if code != 0 {
			t.Fatalf("mint guest in the image: exit %d: %s", code, errOut)
		}
		for _, c := range []struct {
			name, path, token, want string
		}{
			{"a guest token at the login exchange is allowed", "/v1/jwt/login", strings.TrimSpace(token), "decision: allowed  status: 200"},
			{"a guest token anywhere else is forbidden", "/v1/messages", strings.TrimSpace(token), "decision: denied  status: 403  reason: guest_token_login_only"},
			{"no token is unauthorized", "/v1/jwt/login", "", "decision: denied  status: 401"},
		} {
			t.Run(c.name, func(t *testing.T) {
				headers := map[string]string{":method": "POST", ":path": c.path, ":authority": "chat.example.com"}
				if c.token != "" {
					headers["authorization"] = "Bearer " + c.token
				}
				req, err := json.Marshal(map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
					"method": "POST", "path": c.path, "host": "chat.example.com", "scheme": "https", "headers": headers,
				}}}})
				if err != nil {
					t.Fatal(err)
				}
				code, out, errOut := inImage(t, rootfs, env, string(req), imageBinary, "check", "--config", imageConfig, "--request", "-")
				if code != 0 || !strings.HasPrefix(out, c.want) {
					t.Fatalf("exit %d, output %q (stderr %s), want it to start %q", code, out, errOut, c.want)
				}
			})
		}
	})
}
