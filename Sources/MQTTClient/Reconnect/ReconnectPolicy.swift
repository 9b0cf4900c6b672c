/// When and how fast the client reconnects after losing its connection.
///
/// The delay before attempt *n* (counting from 0 after the last successful connection) is
/// drawn uniformly from `0...min(maximumDelay, initialDelay × multiplierⁿ)` ("full jitter"),
/// so that many devices cut off together do not all come back at the same instant.
public struct ReconnectPolicy: Sendable, Hashable {
    /// How the delay is spread below its cap.
    public enum Jitter: Sendable, Hashable {
        /// Uniform between zero and the cap.
        case full
        /// Exactly the cap (predictable, for tests and for single devices).
        case none
    }

    /// Whether the client reconnects at all.
    public var isEnabled: Bool
    /// The cap of the first delay; 1 s by default.
    public var initialDelay: Duration
    /// The largest cap; 30 s by default.
    public var maximumDelay: Duration
    /// How the cap grows per failed attempt; 2 by default.
    public var multiplier: Double
    /// Consecutive failed attempts after which the client stops; `nil` never stops.
    public var maximumAttempts: Int?
    /// How the delay is spread below its cap; full jitter by default.
    public var jitter: Jitter

    /// - Parameters:
    ///   - initialDelay: the cap of the first delay; 1 s by default.
    ///   - maximumDelay: the largest cap; 30 s by default.
    ///   - multiplier: how the cap grows per failed attempt; 2 by default.
    ///   - maximumAttempts: failed attempts in a row after which the client stops; unlimited by default.
    ///   - jitter: full jitter by default.
    public init(
        initialDelay: Duration = .seconds(1),
        maximumDelay: Duration = .seconds(30),
        multiplier: Double = 2,
        maximumAttempts: Int? = nil,
        jitter: Jitter = .full
    ) {
        self.isEnabled = true
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
        self.multiplier = multiplier
        self.maximumAttempts = maximumAttempts
        self.jitter = jitter
    }

    /// Never reconnect: a lost connection stops the client.
    public static var disabled: ReconnectPolicy {
        var policy = ReconnectPolicy()
        policy.isEnabled = false
        return policy
    }

    /// The cap of the delay before attempt `attempt` (0-based).
    public func delayCap(attempt: Int) -> Duration {
        let initial = Double(initialDelay.components.seconds) + Double(initialDelay.components.attoseconds) / 1e18
        let maximum = Double(maximumDelay.components.seconds) + Double(maximumDelay.components.attoseconds) / 1e18
        var cap = initial
        for _ in 0..<attempt where cap < maximum { cap *= multiplier }
        cap = min(cap, maximum)
        return .nanoseconds(Int64((cap * 1e9).rounded()))
    }
}

/// Counts failed attempts and draws the next delay.
struct Backoff {
    let policy: ReconnectPolicy
    private(set) var failedAttempts = 0

    init(policy: ReconnectPolicy) { self.policy = policy }

    /// The delay before the next attempt, or `nil` when the client should stop.
    mutating func nextDelay(using generator: inout some RandomNumberGenerator) -> Duration? {
        guard policy.isEnabled else { return nil }
        if let maximum = policy.maximumAttempts, failedAttempts >= maximum { return nil }
        let cap = policy.delayCap(attempt: failedAttempts)
        failedAttempts += 1
        switch policy.jitter {
        case .none:
            return cap
        case .full:
            let nanoseconds = cap.components.seconds * 1_000_000_000 + cap.components.attoseconds / 1_000_000_000
            return .nanoseconds(nanoseconds > 0 ? Int64.random(in: 0...nanoseconds, using: &generator) : 0)
        }
    }

    /// A connection succeeded: the next loss starts from the initial delay again.
    mutating func reset() { failedAttempts = 0 }
}
