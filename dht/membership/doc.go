// Package membership keeps every node's view of the cluster: who is a
// member, in which state, at which incarnation, with which addresses, zone,
// capacity and storage use. It is SWIM with the Lifeguard refinements.
//
// Model. Every node lists every member (dht.Member). Each protocol period
// it probes one member, round-robin over a shuffled list: a direct ping
// within ProbeTimeout; on failure, ping-req through IndirectChecks random
// members, who answer ack or nack; on failure, it suspects the member and
// gossips that. A suspect is declared dead when its suspicion timeout
// passes unless it refutes with a higher incarnation. Updates are
// piggybacked on pings and acks and pushed to GossipNodes random members
// every GossipInterval, each retransmitted RetransmitMult·ceil(log10(N+1))
// times, newest and least sent first. Every PushPullInterval a node
// exchanges its full list with one random live member, and tries one dead
// member, so joiners and healed partitions converge. A push-pull also says
// whether the sender's list is complete (Complete): a node that starts
// joining or restarting knows only what gossip names to it until it has
// merged a complete list.
//
// Precedence for one member: a higher incarnation wins; at equal
// incarnation left > dead > suspect > joining/normal/leaving. Only the node
// itself raises its incarnation: to refute a suspicion or death (including
// after a restart with the same identity), and to announce a change of its
// own state, addresses or storage use. Updates about members a node does not
// know are only accepted in an alive state; a remote dead claim learned by
// push-pull counts as a suspicion, so the accused gets to refute.
//
// Lifeguard. The suspicion timeout starts at SuspicionMaxTimeoutMult times
// the minimum and shrinks toward the minimum as independent suspicions of the
// same member arrive. A node that misses acks and nacks raises its own
// health multiplier, which stretches its probe timeout and interval, so an
// overloaded node does not accuse healthy ones.
//
// Contract with callers:
//   - New validates; Start registers the handlers for ProtocolSWIM and
//     ProtocolPushPull on the transport and starts the loops; Close stops
//     them and waits. With Config.Manual, Start starts no loops and the
//     caller drives everything with Step and the Clock.
//   - Join, Leave, SetState and SetStorage are the node's own actions;
//     Members, Member, Live, Local and NumLive read the current view.
//   - Subscribe registers a callback for member additions and changes of
//     state, addresses, zone or capacity (not incarnation or storage alone,
//     not reaping). Callbacks run synchronously in a goroutine of the
//     package's caller or of a loop, outside internal locks, one at a time,
//     in the order the changes were made. They may call any method of the
//     Memberlist; events they cause are delivered after they return.
//   - Remote input never crashes or blocks a node: malformed members are
//     refused and counted in ringkv_membership_refused_total{reason}.
package membership
