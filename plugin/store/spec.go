package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gallium/gallium-net/plugin/model"
	"github.com/gallium/gallium-net/plugin/specfile"
)

// Keys of the spec. The current spec and every pushed version are stored, so
// that history survives and a push can compare against what it replaces.
const (
	keySpecCurrent = "spec/current"
	prefixSpecHist = "spec/history/"
	prefixSpec     = "spec/"
)

// RevisionHeader starts the comment line that `spec show` prints first and
// `spec push` reads: it records which stored revision a file was based on, so
// a push of an edited old copy cannot silently overwrite a newer spec.
const RevisionHeader = "# gallium-net-spec-revision:"

// SpecRecord is one pushed version of the cluster spec.
type SpecRecord struct {
	// Version numbers pushes 1, 2, 3...: the spec revision that `spec push
	// --base` and the host snapshot refer to.
	Version int64     `json:"version" yaml:"version"`
	YAML    string    `json:"yaml" yaml:"yaml"`
	SHA256  string    `json:"sha256" yaml:"sha256"`
	Pushed  time.Time `json:"pushed" yaml:"pushed"`
	By      string    `json:"by,omitempty" yaml:"by,omitempty"`
	// Forced is set when the push overrode a newer stored revision.
	Forced bool `json:"forced,omitempty" yaml:"forced,omitempty"`
	// ModRevision is the store revision of the record (not stored in it).
	ModRevision int64 `json:"-" yaml:"-"`
}

// Spec parses the stored YAML (with defaults applied).
func (r *SpecRecord) Spec() (*model.Spec, error) {
	s, err := specfile.Parse([]byte(r.YAML), fmt.Sprintf("stored spec revision %d", r.Version))
	if err != nil {
		return nil, fmt.Errorf("stored spec revision %d: %w", r.Version, err)
	}
	return s, nil
}

// PushRequest is one `spec push`.
type PushRequest struct {
	// YAML is the spec file's content. A RevisionHeader line in it is
	// removed before storing and, when Base is unset, gives Base.
	YAML []byte
	// Base is the stored revision the file was based on (0: none, which is
	// only accepted while the store holds no spec).
	Base int64
	// Force overwrites a newer stored revision.
	Force bool
	By    string
}

// PushResult says what a push did.
type PushResult struct {
	Record SpecRecord
	// Unchanged is set when the file equals the current spec: nothing was
	// written.
	Unchanged bool
}

// Spec returns the current spec record, or an error wrapping ErrNotFound
// when nothing was pushed yet.
func (s *Store) Spec(ctx context.Context) (*SpecRecord, error) {
	kv, err := s.b.Get(ctx, keySpecCurrent)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("no cluster spec in %s: push one with 'gallium-net spec push -f SPEC': %w", s.b, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read spec from %s: %w", s.b, err)
	}
	return decodeSpec(kv)
}

func decodeSpec(kv KeyValue) (*SpecRecord, error) {
	var r SpecRecord
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return nil, fmt.Errorf("stored spec %s is corrupt: %w", kv.Key, err)
	}
	r.ModRevision = kv.ModRevision
	return &r, nil
}

// SpecHistory returns every pushed version, oldest first.
func (s *Store) SpecHistory(ctx context.Context) ([]SpecRecord, error) {
	kvs, _, err := s.b.List(ctx, prefixSpecHist)
	if err != nil {
		return nil, fmt.Errorf("read spec history from %s: %w", s.b, err)
	}
	out := make([]SpecRecord, 0, len(kvs))
	for _, kv := range kvs {
		r, err := decodeSpec(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, nil
}

// SplitRevisionHeader removes RevisionHeader lines from a spec file and
// returns the revision the first one names (0 when there is none).
func SplitRevisionHeader(data []byte) ([]byte, int64, error) {
	var out bytes.Buffer
	var rev int64
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), len(data)+1)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), RevisionHeader); ok {
			if rev == 0 {
				n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
				if err != nil || n < 1 {
					return nil, 0, fmt.Errorf("line %q: the revision must be a positive number (as 'gallium-net spec show' prints it)", line)
				}
				rev = n
			}
			continue
		}
		out.WriteString(line)
		out.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	return out.Bytes(), rev, nil
}

// PushSpec stores a new spec version by compare-and-swap on the current one.
// It refuses a file that does not parse or validate, and one based on an
// older revision than the stored one unless Force is set.
func (s *Store) PushSpec(ctx context.Context, req PushRequest) (PushResult, error) {
	body, headerRev, err := SplitRevisionHeader(req.YAML)
	if err != nil {
		return PushResult{}, fmt.Errorf("spec push: %w", err)
	}
	base := req.Base
	if base == 0 {
		base = headerRev
	}
	spec, err := specfile.Parse(body, "pushed spec")
	if err != nil {
		return PushResult{}, fmt.Errorf("spec push: %w", err)
	}
	// Every hypervisor realises the stored spec: an invalid one must never
	// get in, whoever calls.
	if err := model.Validate(spec).Err(); err != nil {
		return PushResult{}, fmt.Errorf("spec push: refusing an invalid spec (check it with 'gallium-net validate -f FILE'): %w", err)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])

	cur, err := s.Spec(ctx)
	var curVersion, curMod int64
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return PushResult{}, err
	default:
		curVersion, curMod = cur.Version, cur.ModRevision
		if cur.SHA256 == hash {
			return PushResult{Record: *cur, Unchanged: true}, nil
		}
	}
	if !req.Force && base != curVersion {
		if base == 0 {
			return PushResult{}, conflictf("spec push: %s holds spec revision %d and the file does not say which revision it was based on; review 'gallium-net spec diff -f FILE', then push with --base %d (or --force)",
				s.b, curVersion, curVersion)
		}
		return PushResult{}, conflictf("spec push: the file is based on revision %d but %s holds revision %d; review 'gallium-net spec diff -f FILE', then push with --base %d (or --force)",
			base, s.b, curVersion, curVersion)
	}
	rec := SpecRecord{
		Version: curVersion + 1,
		YAML:    string(body),
		SHA256:  hash,
		Pushed:  s.now().UTC(),
		By:      req.By,
		Forced:  req.Force && base != curVersion,
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return PushResult{}, fmt.Errorf("spec push: %w", err)
	}
	rev, err := s.b.Txn(ctx,
		[]Cmp{{Key: keySpecCurrent, ModRevision: curMod}},
		[]Op{{Key: keySpecCurrent, Value: data}, {Key: histKey(rec.Version), Value: data}})
	if err != nil {
		return PushResult{}, fmt.Errorf("spec push of revision %d to %s: %w", rec.Version, s.b, err)
	}
	rec.ModRevision = rev
	return PushResult{Record: rec}, nil
}

// conflictError is an ErrConflict whose message already says everything.
type conflictError struct{ msg string }

func (e *conflictError) Error() string        { return e.msg }
func (e *conflictError) Is(target error) bool { return target == ErrConflict }

func conflictf(format string, args ...any) error {
	return &conflictError{fmt.Sprintf(format, args...)}
}

func histKey(version int64) string { return fmt.Sprintf("%s%020d", prefixSpecHist, version) }
