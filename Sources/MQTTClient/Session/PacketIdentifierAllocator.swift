/// Hands out packet identifiers (1...65,535) that are not in use on the session.
///
/// Identifiers go round in order, so an identifier just freed is not reused at once: a late
/// duplicate acknowledgement then cannot complete the wrong flow.
struct PacketIdentifierAllocator {
    private var next: UInt16 = 1
    private(set) var inUse: Set<UInt16> = []

    /// A free identifier, now in use; `nil` when all 65,535 are in use.
    mutating func allocate() -> UInt16? {
        guard inUse.count < Int(UInt16.max) else { return nil }
        while inUse.contains(next) { advance() }
        let identifier = next
        inUse.insert(identifier)
        advance()
        return identifier
    }

    /// Marks an identifier restored from a session as in use.
    mutating func reserve(_ identifier: UInt16) { inUse.insert(identifier) }

    mutating func release(_ identifier: UInt16) { inUse.remove(identifier) }

    mutating func releaseAll() { inUse.removeAll() }

    private mutating func advance() { next = next == UInt16.max ? 1 : next + 1 }
}
