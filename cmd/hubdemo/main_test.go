package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/cloudiot/v1"
	"google.golang.org/api/option"

	"github.com/passerelle-iot/passerelle/pkg/bus"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
	"github.com/passerelle-iot/passerelle/pkg/testutil"
	"github.com/passerelle-iot/passerelle/services/bridge"
	"github.com/passerelle-iot/passerelle/services/hub"
	"github.com/passerelle-iot/passerelle/services/manager"
	"github.com/passerelle-iot/passerelle/services/pubsub"
)

// stack is the manager, the bridge (plain MQTT) and the hub in process,
// the hub's key store in dataDir as passerelle serve has it.
type stack struct {
	adminAddr, hubAddr, dataDir, pubsubAddr string
	pool                                    *hub.Pool
}

func startStack(t *testing.T) stack {
	t.Helper()
	ctx := context.Background()
	log := testutil.Logger(t)
	st := testutil.Must(sqlstore.Open(ctx, log, filepath.Join(t.TempDir(), "db.sqlite")))
	t.Cleanup(func() { _ = st.Close() })
	b := testutil.Must(bus.Open(ctx, log, bus.Options{DataDir: t.TempDir()}))
	t.Cleanup(func() { _ = b.Close() })

	mlis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	m := manager.New(log, st, manager.WithInsecureNoAuth(), manager.WithBus(b))
	testutil.Serve(t, func(ctx context.Context) error { return m.Serve(ctx, mlis) })
	blis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	br := bridge.New(log, st, b)
	testutil.Serve(t, func(ctx context.Context) error { return br.Serve(ctx, blis) })

	s := stack{adminAddr: mlis.Addr().String(), dataDir: t.TempDir()}
	prov := testutil.Must(hub.DialManager(ctx, "http://"+s.adminAddr, ""))
	keys := testutil.Must(hub.NewKeys("", filepath.Join(s.dataDir, "hub-keys")))
	s.pool = hub.NewPool(log, blis.Addr().String(), keys, hub.WithGatewayCheck(prov))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.pool.Close(ctx); err != nil {
			t.Errorf("pool.Close: %v", err)
		}
	})
	plis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	ps := testutil.Must(pubsub.New(log, b, pubsub.WithAllowUnauthenticated(), pubsub.WithRegistryTopics(st.(pubsub.TopicLister).NotificationTopics)))
	testutil.Serve(t, func(ctx context.Context) error { return ps.Serve(ctx, plis) })
	s.pubsubAddr = plis.Addr().String()
	hlis := testutil.Must(net.Listen("tcp", "127.0.0.1:0"))
	hs := hub.NewServer(log, hub.NewService(log, s.pool, keys, prov), hub.WithInsecureNoAuth(), hub.WithShutdownTimeout(time.Second))
	testutil.Serve(t, func(ctx context.Context) error { return hs.Serve(ctx, hlis) })
	s.hubAddr = hlis.Addr().String()
	return s
}

// TestDemoInteractive runs the demo as a person would: it pauses before
// listening and, after showing where to read the states, before cleaning
// up; the config log goes into the data folder; once the gateway is
// deleted the hub holds neither its connection nor its key.
func TestDemoInteractive(t *testing.T) {
	s := startStack(t)
	t.Chdir(t.TempDir()) // where the config log used to land

	stdin, typed := io.Pipe()
	stdoutR, stdout := io.Pipe()
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdoutR)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := make(chan int, 1)
	go func() {
		defer stdout.Close()
		code <- run(ctx, []string{"--admin-addr", s.adminAddr, "--hub-addr", s.hubAddr, "--pubsub-addr", s.pubsubAddr, "--data-dir", s.dataDir,
			"--token", "unused", "--listen", "1s", "--states", "2", "--state-interval", "1100ms"},
			stdin, stdout, io.Discard, func(string) (string, bool) { return "", false })
	}()
	defer typed.Close() // ends a pause still waiting

	var seen []string
	// next returns the output up to the first line containing want.
	next := func(want string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the demo ended without printing %q; it printed:\n%s", want, strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				if strings.Contains(l, want) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q in time; the demo printed:\n%s", want, strings.Join(seen, "\n"))
			}
		}
	}

	// The console's pages of the bound device, where the sample printed
	// Google's console URLs.
	consolePrefix := "http://" + s.adminAddr + "/console/projects/"
	next("Try setting configuration in: " + consolePrefix)
	if l := seen[len(seen)-1]; !strings.HasSuffix(l, "/devices/test-device-noauthbind/config") {
		t.Errorf("the config page's URL: %q", l)
	}
	next("Press enter to continue")
	fmt.Fprintln(typed)
	next("You can read the state messages for your device at this URL: " + consolePrefix)
	if l := seen[len(seen)-1]; !strings.HasSuffix(l, "/devices/test-device-noauthbind/state") {
		t.Errorf("the state page's URL: %q", l)
	}
	next("Read 2 states from subscription projects/passerelle-demo/subscriptions/test-registry-")
	if !slices.ContainsFunc(seen, func(l string) bool {
		return strings.Contains(l, "Topic policy: 1 binding(s), serviceAccount:cloud-iot@system.gserviceaccount.com may publish")
	}) {
		t.Errorf("the demo did not set the topic's policy; it printed:\n%s", strings.Join(seen, "\n"))
	}
	next("Press enter to clean up")
	for _, l := range seen {
		if strings.Contains(l, "Delete") || strings.Contains(l, "unbound") {
			t.Fatalf("the demo cleaned up before the pause: %q", l)
		}
	}
	// The states are still there to read.
	var registry string
	for _, l := range seen {
		if id, ok := strings.CutPrefix(l, "Creating registry: "); ok {
			registry = "projects/passerelle-demo/locations/us-central1/registries/" + id
		}
	}
	admin := testutil.Must(cloudiot.NewService(ctx, option.WithEndpoint("http://"+s.adminAddr+"/"), option.WithoutAuthentication()))
	states, err := admin.Projects.Locations.Registries.Devices.States.List(registry + "/devices/test-device-noauthbind").Do()
	if err != nil || len(states.DeviceStates) != 2 {
		t.Fatalf("states while paused: %v, %v; want 2", states, err)
	}

	fmt.Fprintln(typed)
	next("Delete registry")
	for range lines {
	}
	if c := <-code; c != 0 {
		t.Fatalf("the demo exited with %d:\n%s", c, strings.Join(seen, "\n"))
	}

	// The config log is in the data folder, not in the current one.
	log, err := os.ReadFile(filepath.Join(s.dataDir, "config_log.csv"))
	if err != nil || !strings.HasPrefix(string(log), "time,topic,data\n") {
		t.Errorf("config log in the data folder: %q, %v", log, err)
	}
	if _, err := os.Stat("config_log.csv"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("config_log.csv in the current folder: %v", err)
	}
	// The hub let the deleted gateway go: no connection, no key.
	testutil.WaitFor(t, 10*time.Second, func() error {
		if v := s.pool.View(); len(v) != 0 {
			return fmt.Errorf("the pool holds %+v", v)
		}
		keys, err := os.ReadDir(filepath.Join(s.dataDir, "hub-keys"))
		if err != nil || len(keys) != 0 {
			return fmt.Errorf("hub-keys: %v, %v", keys, err)
		}
		return nil
	})
}
