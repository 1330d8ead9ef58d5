package confirm

import (
	"errors"
	"testing"
	"time"

	"github.com/gallium/gallium-net/netsetup"
)

func TestConfirmStoreConfirmAndRollbackNeverBothWin(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	snap, _ := netsetup.NewSimKernel("eno1", "eno2").Observe()
	now := time.Now()
	for _, first := range []string{"confirm", "rollback"} {
		t.Run(first+" first", func(t *testing.T) {
			id := NewPendingID(now)
			if err := s.Save(&Pending{ID: id, Hypervisor: "hv1", Created: now, Deadline: now.Add(time.Minute), Snapshot: snap}); err != nil {
				t.Fatal(err)
			}
			if got := s.Armed(); len(got) == 0 || got[len(got)-1] != id {
				t.Fatalf("armed: %v", got)
			}
			p, err := s.Load(id)
			if err != nil || p.Snapshot.Link("eno1") == nil || p.Hypervisor != "hv1" {
				t.Fatalf("load: %+v %v", p, err)
			}
			if first == "confirm" {
				if err := s.Confirm(id); err != nil {
					t.Fatal(err)
				}
				if err := s.Take(id); !errors.Is(err, ErrNotArmed) {
					t.Fatalf("rollback after confirm: %v, want ErrNotArmed", err)
				}
			} else {
				if err := s.Take(id); err != nil {
					t.Fatal(err)
				}
				if err := s.Confirm(id); !errors.Is(err, ErrNotArmed) {
					t.Fatalf("confirm after the rollback started: %v, want ErrNotArmed", err)
				}
				if err := s.Finish(id, nil); err != nil || s.Result(id) == "" {
					t.Fatalf("finish: %v %q", err, s.Result(id))
				}
			}
			for _, a := range s.Armed() {
				if a == id {
					t.Errorf("%s still armed", id)
				}
			}
		})
	}
	if _, err := s.Load("../etc/passwd"); err == nil {
		t.Error("an ID with a path must be refused")
	}
}

func TestConfirmStoreSaveWithoutDeadlineIsNotArmed(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	snap, _ := netsetup.NewSimKernel("eno1").Observe()
	id := NewPendingID(time.Now())
	if err := s.Save(&Pending{ID: id, Created: time.Now(), Snapshot: snap}); err != nil {
		t.Fatal(err)
	}
	if len(s.Armed()) != 0 || len(s.IDs()) != 1 {
		t.Errorf("armed %v, saved %v; want one saved, none armed", s.Armed(), s.IDs())
	}
	if err := s.Take(id); !errors.Is(err, ErrNotArmed) {
		t.Errorf("take: %v", err)
	}
}
