import NIOConcurrencyHelpers
import NIOCore

/// Slows down guessing: after a few failed logins from one IP address, every CONNACK to that
/// address waits, twice as long for each further failure, up to a cap. Addresses that do not
/// fail are never slowed, and an address is forgiven once it stops failing for a while.
final class LoginThrottle: Sendable {
    struct Policy: Sendable {
        /// Failures allowed before any delay.
        var freeFailures = 3
        /// The delay after the first failure beyond the free ones.
        var initialDelay = TimeAmount.milliseconds(100)
        var maximumDelay = TimeAmount.seconds(10)
        /// Failures older than this are forgotten.
        var forgetAfter = TimeAmount.minutes(5)
        /// Addresses tracked at most (the oldest are forgotten first).
        var maximumAddresses = 100_000
    }

    private struct Record {
        var failures: Int
        var lastFailure: NIODeadline
    }

    private let policy: Policy
    private let records = NIOLockedValueBox<[String: Record]>([:])

    init(policy: Policy = Policy()) {
        self.policy = policy
    }

    /// The IP address without the port: a client reconnects from a new port each time.
    static func key(for address: SocketAddress?) -> String? {
        address?.ipAddress
    }

    /// Notes a failed login from `address`.
    func recordFailure(from address: SocketAddress?, now: NIODeadline = .now()) {
        guard let key = Self.key(for: address) else { return }
        records.withLockedValue { records in
            var record = records[key] ?? Record(failures: 0, lastFailure: now)
            if now - record.lastFailure > policy.forgetAfter { record.failures = 0 }
            record.failures += 1
            record.lastFailure = now
            records[key] = record
            if records.count > policy.maximumAddresses { forgetStale(&records, now: now) }
        }
    }

    /// How long to hold the CONNACK for a client from `address` (zero for most).
    func delay(for address: SocketAddress?, now: NIODeadline = .now()) -> TimeAmount {
        guard let key = Self.key(for: address) else { return .zero }
        return records.withLockedValue { records in
            guard let record = records[key] else { return .zero }
            if now - record.lastFailure > policy.forgetAfter {
                records[key] = nil
                return .zero
            }
            let over = record.failures - policy.freeFailures
            guard over > 0 else { return .zero }
            let factor = Int64(1) << Int64(min(over - 1, 20))
            return .nanoseconds(min(policy.initialDelay.nanoseconds * factor, policy.maximumDelay.nanoseconds))
        }
    }

    /// Addresses currently tracked.
    var trackedAddresses: Int { records.withLockedValue { $0.count } }

    private func forgetStale(_ records: inout [String: Record], now: NIODeadline) {
        records = records.filter { now - $0.value.lastFailure <= policy.forgetAfter }
        guard records.count > policy.maximumAddresses else { return }
        let keep = records.sorted { $0.value.lastFailure > $1.value.lastFailure }.prefix(policy.maximumAddresses / 2)
        records = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
    }
}
