import Atomics
import MQTTCore

/// The members of one shared subscription `$share/{group}/{filter}`: each message goes to
/// one of them, in turn, preferring members that are connected.
///
/// Membership changes under the router's write lock and is read under its read lock; the turn
/// counter is atomic so that routing on several event loops at once still takes turns.
final class SharedGroup: @unchecked Sendable {
    let name: String
    let filter: String
    /// Guarded by the router's lock.
    var members: [RouteEntry] = []
    private let turn = ManagedAtomic<Int>(0)

    init(name: String, filter: String) {
        self.name = name
        self.filter = filter
    }

    /// The subscription's text, `$share/{group}/{filter}`, as the store keeps it with copies.
    var subscription: String { "$share/\(name)/\(filter)" }

    /// The next member in turn, skipping disconnected ones while any is connected and skipping
    /// `excluded` (a member whose connection just dropped).
    func pick(excluding excluded: Session? = nil, where eligible: (RouteEntry) -> Bool = { _ in true }) -> RouteEntry? {
        let count = members.count
        guard count > 0 else { return nil }
        let start = turn.loadThenWrappingIncrement(ordering: .relaxed)
        var fallback: RouteEntry?
        for offset in 0..<count {
            let member = members[(start &+ offset) % count]
            if member.session === excluded || !eligible(member) { continue }
            if member.session.isConnected { return member }
            if fallback == nil { fallback = member }
        }
        return fallback
    }
}
