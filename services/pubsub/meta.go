package pubsub

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// Kinds of record in the bucket; a key is "<kind>.<name in base64url>".
const (
	kindTopic        = "topic"
	kindSubscription = "sub"
	kindPolicy       = "iam"
	// kindDetached is the last stream sequence a subscription of a
	// deleted topic may deliver (a wrapperspb.UInt64Value).
	kindDetached = "detached"
)

var (
	errNotFound = errors.New("not found")
	errExists   = errors.New("already exists")
	errConflict = errors.New("changed concurrently")
)

// metaStore keeps topics, subscriptions and IAM policies as protobuf
// records in a JetStream key-value bucket shared by every replica.
type metaStore struct{ kv jetstream.KeyValue }

func openMeta(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*metaStore, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "Passerelle Pub/Sub topics, subscriptions and IAM policies",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, err
	}
	return &metaStore{kv: kv}, nil
}

func metaKey(kind, name string) string {
	return kind + "." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// get reads a record into msg and returns its revision.
func (m *metaStore) get(ctx context.Context, kind, name string, msg proto.Message) (uint64, error) {
	e, err := m.kv.Get(ctx, metaKey(kind, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, errNotFound
	}
	if err != nil {
		return 0, err
	}
	if err := proto.Unmarshal(e.Value(), msg); err != nil {
		return 0, fmt.Errorf("record %s of %q: %w", kind, name, err)
	}
	return e.Revision(), nil
}

// create stores a new record; errExists if the name is taken.
func (m *metaStore) create(ctx context.Context, kind, name string, msg proto.Message) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = m.kv.Create(ctx, metaKey(kind, name), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return errExists
	}
	return err
}

// update replaces the record at revision rev; errConflict if another
// write came first.
func (m *metaStore) update(ctx context.Context, kind, name string, msg proto.Message, rev uint64) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = m.kv.Update(ctx, metaKey(kind, name), b, rev)
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return errConflict
	}
	return err
}

// put stores a record, replacing any.
func (m *metaStore) put(ctx context.Context, kind, name string, msg proto.Message) error {
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = m.kv.Put(ctx, metaKey(kind, name), b)
	return err
}

func (m *metaStore) delete(ctx context.Context, kind, name string) error {
	err := m.kv.Purge(ctx, metaKey(kind, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// names lists the names of the records of a kind, sorted.
func (m *metaStore) names(ctx context.Context, kind string) ([]string, error) {
	l, err := m.kv.ListKeysFiltered(ctx, kind+".*")
	if err != nil {
		return nil, err
	}
	defer l.Stop()
	var out []string
	for k := range l.Keys() {
		enc, ok := strings.CutPrefix(k, kind+".")
		if !ok {
			continue
		}
		b, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil {
			continue
		}
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out, nil
}
