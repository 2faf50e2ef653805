package datadir_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/datadir"
)

func TestClaimTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d, err := datadir.Claim(dir, "passerelle serve")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("folder: %v, %v; want mode 0700", fi.Mode(), err)
	}
	// flock locks belong to the open file, so a second Claim in this
	// process is refused as another process's would be.
	_, err = datadir.Claim(dir, "passerelle serve")
	var inUse *datadir.InUseError
	if !errors.As(err, &inUse) || !errors.Is(err, datadir.ErrInUse) {
		t.Fatalf("second claim: %v, want an InUseError", err)
	}
	want := "pid " + strconv.Itoa(os.Getpid()) + " (passerelle serve)"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q should name the folder and %q", err, want)
	}
	if err := d.Release(); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(); err != nil {
		t.Fatal("second release:", err)
	}
	d2, err := datadir.Claim(dir, "passerelle serve")
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	d2.Release()
}

// A process that dies holding the folder leaves nothing behind: the kernel
// drops its lock.
func TestClaimAfterHolderDies(t *testing.T) {
	if os.Getenv("DATADIR_HOLD") != "" {
		if _, err := datadir.Claim(os.Getenv("DATADIR_HOLD"), "holder"); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		select {} // until killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestClaimAfterHolderDies$")
	cmd.Env = append(os.Environ(), "DATADIR_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("holder: %q, %v", buf, err)
	}
	_, err = datadir.Claim(dir, "second")
	if !errors.Is(err, datadir.ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)+" (holder)") {
		t.Fatalf("claim while held: %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	d, err := datadir.Claim(dir, "second")
	if err != nil {
		t.Fatalf("claim after the holder died: %v", err)
	}
	d.Release()
}

func TestClaimUnwritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes anywhere")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	if _, err := datadir.Claim(dir, "x"); err == nil || !strings.Contains(err.Error(), "cannot write in the data folder") {
		t.Fatalf("claim of a read-only folder: %v", err)
	}
}
