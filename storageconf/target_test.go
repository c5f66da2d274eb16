package storageconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cargohold/cargohold/layout/driver"
)

// TestStoreRequestTarget: the driver a conf command registers a store with, and when it refuses,
// warns or goes on, for a store, a path that is not one and one that is missing.
func TestStoreRequestTarget(t *testing.T) {
	store := t.TempDir()
	missing := filepath.Join(t.TempDir(), "not-yet")
	notStore := errors.New("not a cargohold store")
	cases := []struct {
		name    string
		req     StoreRequest
		want    driver.Driver
		warning string // in Target.Warning; "" none
		err     error  // errors.Is; nil: no error
		errText string
	}{
		{name: "the store's own driver", req: StoreRequest{Store: store, Found: driver.VFS, Registers: true}, want: driver.VFS},
		{name: "the driver asked for, the store's", req: StoreRequest{Store: store, Driver: "vfs", Found: driver.VFS, Registers: true}, want: driver.VFS},
		{name: "another driver than the store's", req: StoreRequest{Store: store, Driver: "overlay", Found: driver.VFS},
			err: driver.ErrWrongDriver, errText: "is a vfs store; Podman with driver \"overlay\" cannot read it"},
		{name: "another driver, to take it out", req: StoreRequest{Store: store, Driver: "overlay", Found: driver.VFS, Remove: true}, want: driver.Overlay},
		{name: "an unknown driver", req: StoreRequest{Store: store, Driver: "btrfs", Found: driver.VFS}, err: ErrInvalid, errText: "unknown storage driver"},
		{name: "a relative path", req: StoreRequest{Store: "rel/store"}, err: ErrInvalid, errText: "not absolute"},
		{name: "a path with a comma", req: StoreRequest{Store: store + ",x"}, err: ErrInvalid, errText: "comma"},
		{name: "not a store, registered", req: StoreRequest{Store: store, NotStore: notStore, Registers: true},
			err: ErrInvalid, errText: "not a cargohold store; give --allow-missing-store"},
		{name: "not a store, registered anyway", req: StoreRequest{Store: store, NotStore: notStore, Registers: true, AllowMissing: true}, want: driver.Overlay},
		{name: "not a store, only printed", req: StoreRequest{Store: store, NotStore: notStore}, want: driver.Overlay, warning: "not a cargohold store"},
		{name: "not a store, a vfs snippet", req: StoreRequest{Store: store, Driver: "vfs", NotStore: notStore}, want: driver.VFS, warning: "not a cargohold store"},
		{name: "missing, only printed", req: StoreRequest{Store: missing, Found: driver.VFS, NotStore: notStore}, want: driver.Overlay,
			warning: "no such file or directory"},
		{name: "missing, registered", req: StoreRequest{Store: missing, NotStore: notStore, Registers: true}, err: ErrInvalid,
			errText: "every Podman command fails while a listed store is missing"},
		{name: "missing, taken out", req: StoreRequest{Store: missing, NotStore: notStore, Remove: true, Registers: false}, want: driver.Overlay},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.req.Target()
			if c.err != nil {
				if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.errText) {
					t.Fatalf("error %v, want one wrapping %v saying %q", err, c.err, c.errText)
				}
				if errors.Is(c.err, driver.ErrWrongDriver) && errors.Is(err, ErrInvalid) {
					t.Errorf("a wrong driver is a store error, not an invalid request: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Store != c.req.Store || got.Driver != c.want {
				t.Errorf("target %s %s, want %s %s", got.Store, got.Driver, c.req.Store, c.want)
			}
			if (got.Warning == nil) != (c.warning == "") || got.Warning != nil && !strings.Contains(got.Warning.Error(), c.warning) {
				t.Errorf("warning %v, want %q", got.Warning, c.warning)
			}
		})
	}
}

// TestStoreRequestTargetNotADirectory: a file where the store should be is no store to register.
func TestStoreRequestTargetNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := StoreRequest{Store: file, Found: driver.Overlay, Registers: true}.Target()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "is not a directory") {
		t.Fatalf("error %v, want an invalid request saying it is not a directory", err)
	}
}
