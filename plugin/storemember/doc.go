// Package storemember runs this hypervisor's member of the cluster store:
// etcd's server library, embedded in gallium-net. Debian 12 ships etcd 3.4
// and Debian 13 etcd 3.5, both older than the 3.7 client gallium-net links,
// and a cluster mid-upgrade mixes the two releases; embedding the server
// gives one binary and one etcd version across the whole cluster, whatever
// each host's release ships. The `gallium-net-store.service` unit is to run
// it through the CLI.
//
// A member talks mutual TLS only, to clients and to peers alike, with the
// cluster CA of plugin/clusterpki: a host without a certificate from that CA
// can neither read the store nor pose as a member.
//
// A cluster grows one hypervisor at a time: the first starts a one-member
// cluster (State new); each other one is added as a learner by a running
// member (AddLearner), starts with the initial cluster that returns (State
// existing) and is promoted to a voting member once it has caught up
// (Promote). etcd takes one learner at a time, and a learner cannot vote, so
// a joining hypervisor that never comes up does not cost the cluster its
// quorum.
//
// etcd's traps are turned into operator words here, before etcd starts where
// that is possible: a data directory left by another cluster or by an earlier
// member under the same name (found through a marker file this package
// writes into the data directory), a name already in the cluster, a join
// while another is under way, an initial cluster that does not match the
// running one.
//
// A single-hypervisor "evaluation" cluster is not this package's business:
// it runs no etcd at all and keeps its store in the embedded bbolt file
// (plugin/store/boltstore).
package storemember
