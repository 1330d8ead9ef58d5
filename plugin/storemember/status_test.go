package storemember

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// slowStatus answers after the n-th call's delay, or fails with err.
type slowStatus struct {
	delays []time.Duration
	err    error
	calls  int
}

func (s *slowStatus) Status(ctx context.Context, _ string) (*clientv3.StatusResponse, error) {
	d := s.delays[min(s.calls, len(s.delays)-1)]
	s.calls++
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.err != nil {
		return nil, s.err
	}
	return &clientv3.StatusResponse{Version: "3.5"}, nil
}

func TestMemberStatusTries(t *testing.T) {
	tries := []time.Duration{20 * time.Millisecond, 200 * time.Millisecond}
	refused := errors.New("connection refused")
	for _, tc := range []struct {
		name      string
		st        *slowStatus
		ctx       time.Duration // 0: no deadline
		wantErr   bool
		wantCalls int
	}{
		// A member slower than the first bound answers the second try.
		{"slow member answers the second try", &slowStatus{delays: []time.Duration{time.Second, 50 * time.Millisecond}}, 0, false, 2},
		{"fast member, one try", &slowStatus{delays: []time.Duration{0}}, 0, false, 1},
		// A refused connection is an answer: no second try.
		{"refused is not retried", &slowStatus{delays: []time.Duration{0}, err: refused}, 0, true, 1},
		{"dead member: both tries time out", &slowStatus{delays: []time.Duration{time.Second}}, 0, true, 2},
		// The caller's own deadline ends it: no second try after it.
		{"caller's deadline", &slowStatus{delays: []time.Duration{time.Second, 0}}, 10 * time.Millisecond, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			st, err := memberStatus(ctx, tc.st, "https://192.0.2.1:2379", tries)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && st.Version != "3.5" {
				t.Errorf("status %+v", st)
			}
			if tc.wantErr && tc.st.err != nil && !errors.Is(err, refused) {
				t.Errorf("err = %v, want the endpoint's own error", err)
			}
			if tc.st.calls != tc.wantCalls {
				t.Errorf("%d tries, want %d", tc.st.calls, tc.wantCalls)
			}
		})
	}
}
