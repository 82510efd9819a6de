// Package clustertest is ringkv's fault-injection suite (DESIGN.md,
// testing layer 4) and the history checker that judges it.
//
// Model. A real cluster of ringkv daemons runs, as containers built FROM
// scratch when Docker answers (mode docker) or as local processes
// otherwise (mode process). Clients bound to every node record a history:
// each operation's invoke and complete time, arguments and result (ok,
// fail, unknown). Three workloads run in parallel: unique-key writes and
// reads of them; blind (context-free) writes to a few hot keys mixed with
// read-modify-writes that carry the read's causal context; and deletes,
// with the context of a read, of keys written earlier. A nemesis injects
// one fault about every ten seconds, chosen from a seeded generator:
// isolating a node, a majority/minority partition, kill -9 and restart,
// pause, graceful restart, and a clock offset. After the run every fault
// is healed, the suite waits until all replicas report equal Merkle roots
// and empty hint queues, and reads every key through every node.
//
// Contract. Check is pure: given a history and the fault windows it
// reports lost acknowledged writes, phantom values, resurrected values,
// availability and stale reads; see Check for the exact rules. The
// checker and the history codec build without tags and are unit-tested
// on hand-made histories. The suite itself (cluster control, workloads,
// nemesis, TestFaults) builds only with the clustertest tag:
//
//	go test -tags clustertest ./daemon/clustertest -run TestFaults -duration 3m
//
// Flags: -duration, -seed (0 picks one; the seed is printed with a replay
// command that reruns the same fault schedule), -nodes, -mode
// docker|process|auto, -faults-every, -faults (a subset of kinds),
// -min-faults (run past -duration, by up to half of it, until that many
// faults were injected), -rate, -replicas/-write-quorum/-read-quorum,
// -timing, -converge-bound, -loopback (process mode without network
// namespaces), -out (history.jsonl, faults.json, summary.txt and node
// logs; default a new temp dir), -keep (leave the cluster running). The
// summary line is printed last:
//
//	ops=… acked=… faults=… lost=0 phantom=0 converged_s=… availability=…
//
// Runs longer than a few minutes need -timeout (go test's default is 10m).
// Containers, volumes and networks of an interrupted run carry the label
// ringkv.clustertest; remove them with
//
//	docker rm -f $(docker ps -aq --filter label=ringkv.clustertest)
//	docker volume rm $(docker volume ls -q --filter label=ringkv.clustertest)
//	docker network rm $(docker network ls -q --filter label=ringkv.clustertest)
package clustertest
