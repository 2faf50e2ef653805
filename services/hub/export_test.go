package hub

import "github.com/passerelle-iot/passerelle/pkg/cluster"

// Preferred returns the replica, of instances, that rendezvous hashing
// prefers for gateway, for tests that check the balance.
func Preferred(gateway string, instances ...string) string {
	ms := make([]cluster.LiveMember, len(instances))
	for i, in := range instances {
		ms[i].Instance = in
	}
	m, _ := rendezvous(gateway, ms)
	return m.Instance
}
