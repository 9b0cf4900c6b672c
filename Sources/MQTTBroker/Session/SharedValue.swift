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
/// so there are a handful at a time; the table holds ``capacity`` at most and starts over when
/// full (after many reloads with new limits): copies handed out stay with their holders, and
/// the values in force are shared again from then on.
struct SharedValues<Value: Hashable & Sendable>: Sendable {
    static var capacity: Int { 64 }

    private let table = NIOLockedValueBox<[Value: SharedValue<Value>]>([:])

    init() {}

    func share(_ value: Value) -> SharedValue<Value> {
        table.withLockedValue { table in
            if let shared = table[value] { return shared }
            if table.count >= Self.capacity { table.removeAll() }
            let shared = SharedValue(value)
            table[value] = shared
            return shared
        }
    }
}

/// A value of which its type keeps shared copies (``SharedValues``).
protocol Shareable: Hashable, Sendable {
    static var shared: SharedValues<Self> { get }
}

/// A stored property that keeps a reference to a shared copy of its value (8 bytes) instead of
/// the value; setting it looks the new value up only when it changed (the table has a lock).
@propertyWrapper
struct Shared<Value: Shareable> {
    private var copy: SharedValue<Value>

    init(wrappedValue: Value) { copy = Value.shared.share(wrappedValue) }

    var wrappedValue: Value {
        get { copy.value }
        set { if newValue != copy.value { copy = Value.shared.share(newValue) } }
    }
}
