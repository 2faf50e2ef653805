package sqlstore_test

import (
	"slices"
	"testing"

	"github.com/passerelle-iot/passerelle/pkg/store"
	"github.com/passerelle-iot/passerelle/pkg/store/sqlstore"
)

func TestNotificationTopics(t *testing.T) {
	for name, open := range map[string]func(testing.TB) *sqlstore.Store{"sqlite": openSQLite, "postgres": openPostgres} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			regs := []*store.Registry{
				{Key: store.RegistryKey{Project: "p", Location: "l", ID: "r1"}, StateNotificationTopic: "projects/p/topics/state",
					EventNotificationConfigs: []store.EventNotificationConfig{{PubsubTopicName: "projects/p/topics/events"}, {PubsubTopicName: "projects/p/topics/temp", SubfolderMatches: "temp"}}},
				{Key: store.RegistryKey{Project: "q", Location: "l", ID: "r2"},
					EventNotificationConfigs: []store.EventNotificationConfig{{PubsubTopicName: "projects/p/topics/events"}}},
				{Key: store.RegistryKey{Project: "q", Location: "m", ID: "r3"}},
			}
			for _, r := range regs {
				if err := s.CreateRegistry(t.Context(), r); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.NotificationTopics(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"projects/p/topics/events", "projects/p/topics/state", "projects/p/topics/temp"}
			if !slices.Equal(got, want) {
				t.Errorf("NotificationTopics = %q, want %q", got, want)
			}
		})
	}
}
