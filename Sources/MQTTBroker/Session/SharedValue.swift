import NIOConcurrencyHelpers

/// One copy of an immutable value that thousands of objects would otherwise each keep inline.
/// Every session holds the limits the configuration gives it (``Session/Limits``, 40 bytes, and
/// ``OutboundMessages/Limits``, 48), and nearly all sessions hold the same few: a reference to a
/// shared copy costs each of them 8 bytes instead.
final class SharedValue<Value: Hashable & Sendable>: Sendable {
    let value: Value

    fileprivate init(_ value: Value) { self.value = value }
}

/// Hands out one ``SharedValue`` per distinct value. The values come from the configuration,
/// so there are a handful; past ``capacity`` distinct ones a value gets a copy of its own
/// rather than a place in the table, which therefore never grows without bound.
struct SharedValues<Value: Hashable & Sendable>: Sendable {
    static var capacity: Int { 64 }

    private let table = NIOLockedValueBox<[Value: SharedValue<Value>]>([:])

    init() {}

    func share(_ value: Value) -> SharedValue<Value> {
        table.withLockedValue { table in
            if let shared = table[value] { return shared }
            let shared = SharedValue(value)
            if table.count < Self.capacity { table[value] = shared }
            return shared
        }
    }
}
