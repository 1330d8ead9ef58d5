package libvirtconn

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"libvirt.org/go/libvirt"
)

var eventLoop sync.Once

// StartEventLoop registers libvirt's default event loop and runs it for
// the life of the process. It must run before Open for the connection to
// deliver events; calling it again does nothing.
func StartEventLoop() error {
	var err error
	eventLoop.Do(func() {
		if err = libvirt.EventRegisterDefaultImpl(); err != nil {
			err = fmt.Errorf("register libvirt's event loop: %w", err)
			return
		}
		go func() {
			for {
				if err := libvirt.EventRunDefaultImpl(); err != nil {
					slog.Warn("libvirt event loop", "err", err)
					time.Sleep(time.Second)
				}
			}
		}()
	})
	return err
}

// DomainRef names one domain.
type DomainRef struct{ Name, UUID string }

// RunningDomains lists the domains that run now (not paused: a domain
// paused for an incoming migration has not arrived yet).
func (c *Conn) RunningDomains() ([]DomainRef, error) {
	doms, err := c.c.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_RUNNING)
	if err != nil {
		return nil, err
	}
	var out []DomainRef
	for i := range doms {
		d := &doms[i]
		name, nerr := d.GetName()
		uuid, uerr := d.GetUUIDString()
		d.Free()
		if nerr == nil && uerr == nil {
			out = append(out, DomainRef{Name: name, UUID: uuid})
		}
	}
	return out, nil
}

// Arrivals sends each domain that starts running on this connection's
// host: booted, restored, or resumed at the end of an incoming migration.
// The start of an incoming migration (the domain still paused) is not an
// arrival: the migration may yet fail. closed is closed when the
// connection drops (libvirtd restarted); the caller reconnects.
func (c *Conn) Arrivals(out chan<- DomainRef) (closed <-chan struct{}, stop func(), err error) {
	done := make(chan struct{})
	var once sync.Once
	if err := c.c.RegisterCloseCallback(func(*libvirt.Connect, libvirt.ConnectCloseReason) {
		once.Do(func() { close(done) })
	}); err != nil {
		return nil, nil, fmt.Errorf("watch the libvirt connection: %w", err)
	}
	// Without keepalive a libvirtd that hangs is never noticed.
	if err := c.c.SetKeepAlive(5, 3); err != nil {
		slog.Debug("libvirt keepalive not set", "err", err)
	}
	id, err := c.c.DomainEventLifecycleRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventLifecycle) {
		arrived := false
		switch ev.Event {
		case libvirt.DOMAIN_EVENT_STARTED:
			arrived = ev.Detail != int(libvirt.DOMAIN_EVENT_STARTED_MIGRATED)
		case libvirt.DOMAIN_EVENT_RESUMED:
			arrived = true
		}
		if !arrived {
			return
		}
		name, _ := d.GetName()
		uuid, err := d.GetUUIDString()
		if err != nil {
			return
		}
		select {
		case out <- DomainRef{Name: name, UUID: uuid}:
		default:
			// The receiver is behind; its periodic full pass catches up.
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("subscribe to libvirt's domain events: %w", err)
	}
	return done, func() {
		_ = c.c.DomainEventDeregister(id)
		_ = c.c.UnregisterCloseCallback()
	}, nil
}
