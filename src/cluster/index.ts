export { joinCluster, LEADER_TRAILER, type ClusterMember } from "./cluster-member.js";
export { LeaderElection, type ElectionOptions, type Term } from "./leader-election.js";
export { etcdServiceRegistry, type ServiceEntry, type ServiceKind, type ServiceRegistry } from "./service-registry.js";
export { joinRegistry, type ServiceMember } from "./service-member.js";
export { followRegistryPeer, type PeerTarget, type RegistryPeer } from "./registry-peer.js";
export { followPrefix, readKey, waitForChange, type KeyState, type PrefixState, type RereadReason } from "./key-watch.js";
