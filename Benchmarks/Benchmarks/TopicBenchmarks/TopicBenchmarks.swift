// Topic matching microbenchmarks: one topic name against a SubscriptionTrie of 10,000
// (filter, client) entries shaped like the databus' subscriptions: per-camera detection and
// health topics, `+` and `#` wildcards at several depths, `$SYS/...` monitoring filters and a
// second application (gate control).
//
// Every benchmark runs 1,000 matches per sample (`scalingFactor: .kilo`); figures are per match.

import Benchmark
import MQTTCore

let cameraCount = 4_000
let gateCount = 1_000
let filterCount = 10_000

/// (filter, client identifier) entries; `filterCount` of them, all distinct.
func subscriptions() -> [(filter: String, client: String)] {
    var entries: [(filter: String, client: String)] = []
    entries.reserveCapacity(filterCount)
    for camera in 0..<cameraCount {
        // One database writer per 50 cameras, one health monitor per 100.
        entries.append(("lprserver/cameras/\(camera)/detection", "lpr-db-writer-\(camera % 80)"))
        entries.append(("lprserver/cameras/\(camera)/health", "health-monitor-\(camera % 40)"))
    }
    // Per-camera debugging consoles on every tenth camera (not camera 17).
    for camera in stride(from: 0, to: cameraCount, by: 10) {
        entries.append(("lprserver/cameras/\(camera)/#", "debug-console-\(camera)"))
    }
    for client in ["dashboard-1", "dashboard-2", "archiver"] {
        entries.append(("lprserver/cameras/+/detection", client))
    }
    for client in ["ops-health-1", "ops-health-2"] {
        entries.append(("lprserver/cameras/+/health", client))
    }
    entries.append(("lprserver/#", "auditor"))
    for gate in 0..<gateCount {
        entries.append(("gatecontrol/gates/\(gate)/command", "gate-\(gate)"))
    }
    entries.append(("gatecontrol/gates/+/command", "gate-logger"))
    entries.append(("$SYS/#", "broker-monitor"))
    entries.append(("$SYS/broker/load/+", "load-monitor"))
    var client = 0
    while entries.count < filterCount {
        entries.append(("$SYS/broker/clients/\(client)/connected", "sys-watcher-\(client % 10)"))
        client += 1
    }
    return entries
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 100_000
    )

    let trie = SubscriptionTrie<String, QoS>()
    for (filter, client) in subscriptions() {
        precondition(trie.insert(filter, key: client, value: .atLeastOnce) == nil, "duplicate \(filter) \(client)")
    }
    precondition(trie.count == filterCount, "trie has \(trie.count) entries")

    // (topic name, label, expected number of (filter, key) matches)
    let names: [(name: String, label: String, expected: Int)] = [
        // Exact filter + 3 `lprserver/cameras/+/detection` + `lprserver/#`.
        ("lprserver/cameras/17/detection", "5 matches", 5),
        // Walks four levels deep (gatecontrol → gates → 17 and the `+` branch) and finds nothing.
        ("gatecontrol/gates/17/state", "no match, deep", 0),
        // Misses at the first level.
        ("factory/line/3/temperature", "no match, shallow", 0),
    ]

    for (name, label, expected) in names {
        var found = 0
        trie.forEachMatch(name) { _, _ in found += 1 }
        precondition(found == expected, "\(name): \(found) matches, expected \(expected)")
        precondition(trie.matches(name).count == expected)

        // The broker's path: visit each match without collecting them.
        Benchmark("forEachMatch 10k filters, \(label)") { benchmark in
            for _ in benchmark.scaledIterations {
                var count = 0
                trie.forEachMatch(name) { _, _ in count += 1 }
                blackHole(count)
            }
        }
    }

    // The collecting variant, which also pays for the result array.
    Benchmark("matches() 10k filters, 5 matches") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(trie.matches("lprserver/cameras/17/detection"))
        }
    }
}
