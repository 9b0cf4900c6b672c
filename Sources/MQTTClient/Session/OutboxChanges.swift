/// Changes to the stored outbox, to be written together in one transaction.
///
/// The outbox records what happened to its entries here instead of writing each change as
/// it happens; the client hands the changes to an ``OutboxPersistence`` many at a time
/// (group commit). Applied in one transaction they have the same effect as one by one in the
/// order they happened: appended entries, then changed states, then removals.
public struct OutboxChanges: Sendable {
    /// New entries, oldest first.
    public var appended: [OutboxEntry] = []
    /// Entries whose ``OutboxEntry/state`` changed (QoS 2 flows), in the order of the changes.
    public var updated: [OutboxEntry] = []
    /// Entries to forget, as ranges of sequence numbers in the order they were removed.
    public var removed: [ClosedRange<UInt64>] = []

    public init() {}

    /// Whether there is nothing to store.
    public var isEmpty: Bool { appended.isEmpty && updated.isEmpty && removed.isEmpty }

    mutating func append(_ entry: OutboxEntry) { appended.append(entry) }

    mutating func update(_ entry: OutboxEntry) { updated.append(entry) }

    /// Records a removal; consecutive sequences become one range.
    mutating func remove(_ sequence: UInt64) {
        if let last = removed.last {
            if last.upperBound &+ 1 == sequence {
                removed[removed.count - 1] = last.lowerBound...sequence
                return
            }
            if last.lowerBound &- 1 == sequence {
                removed[removed.count - 1] = sequence...last.upperBound
                return
            }
        }
        removed.append(sequence...sequence)
    }

    /// Adds later changes after these.
    mutating func merge(_ later: OutboxChanges) {
        appended += later.appended
        updated += later.updated
        for range in later.removed {
            if let last = removed.last, last.upperBound &+ 1 == range.lowerBound {
                removed[removed.count - 1] = last.lowerBound...range.upperBound
            } else {
                removed.append(range)
            }
        }
    }

    /// The same effect with less work: an entry appended and removed in the same changes is
    /// neither written nor deleted, and a state change of an entry appended here is written
    /// with the entry.
    public func coalesced() -> OutboxChanges {
        guard !removed.isEmpty || !updated.isEmpty else { return self }
        let removals = removed.sorted { $0.lowerBound < $1.lowerBound }
        func isRemoved(_ sequence: UInt64) -> Bool {
            var low = 0
            var high = removals.count
            while low < high {
                let middle = (low + high) / 2
                if removals[middle].upperBound < sequence { low = middle + 1 } else { high = middle }
            }
            return low < removals.count && removals[low].contains(sequence)
        }
        var result = OutboxChanges()
        result.removed = removed
        var latestState: [UInt64: OutboxEntry.State] = [:]
        for entry in updated where !isRemoved(entry.sequence) { latestState[entry.sequence] = entry.state }
        var appendedSequences = Set<UInt64>()
        result.appended.reserveCapacity(appended.count)
        for var entry in appended where !isRemoved(entry.sequence) {
            if let state = latestState[entry.sequence] { entry.state = state }
            appendedSequences.insert(entry.sequence)
            result.appended.append(entry)
        }
        var seen = Set<UInt64>()
        for entry in updated.reversed() where !appendedSequences.contains(entry.sequence) && !isRemoved(entry.sequence) {
            if seen.insert(entry.sequence).inserted { result.updated.append(entry) }
        }
        result.updated.reverse()
        return result
    }
}
