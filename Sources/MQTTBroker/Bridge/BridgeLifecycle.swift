import NIOCore

/// When a bridge connects, to which of its addresses, and when it tries again — mosquitto's
/// rules for `start_type`, `restart_timeout`, `round_robin` and `try_private`, without I/O.
///
/// ```
///            start (automatic, once)            CONNACK accepted
/// waiting ───────────────────────▶ connecting ─────────────────▶ connected
///    ▲  ▲  lazy: threshold reached      │ failed                     │ lost, idle (lazy),
///    │  └──────────────────────────────┘ (next address, backoff)    │ main address back
///    └──────────────────────────────────────────────────────────────┘
/// ```
///
/// After a failure the next address is tried, after the restart timeout: constant, or
/// "decorrelated jitter" from the base up to the cap, back to the base once connected. A
/// `once` bridge stops after its first failure. A `lazy` bridge connects when `threshold`
/// messages wait and disconnects after `idle_timeout` without traffic. With `round_robin
/// false`, a bridge connected to another address than the first checks every
/// ``primaryProbeInterval`` whether the first answers again, and goes back to it.
struct BridgeLifecycle {
    struct Settings: Equatable {
        var addressCount: Int
        var roundRobin: Bool
        var startType: BridgeConfiguration.StartType
        var restartTimeout: BridgeConfiguration.RestartTimeout
        var threshold: Int
        var idleTimeout: TimeAmount
        /// `try_private`, on a protocol version that has the bit (3.1, 3.1.1).
        var tryPrivate: Bool

        init(_ configuration: BridgeConfiguration) {
            addressCount = configuration.addresses.count
            roundRobin = configuration.roundRobin
            startType = configuration.startType
            restartTimeout = configuration.restartTimeout
            threshold = configuration.threshold
            idleTimeout = .seconds(Int64(configuration.idleTimeout))
            tryPrivate = configuration.tryPrivate && configuration.protocolVersion != .v5
        }
    }

    enum Phase: Equatable {
        /// Not connected; the next attempt is due at `until` (nil: not scheduled — a lazy
        /// bridge waiting for its threshold, or a `once` bridge that failed).
        case waiting(until: NIODeadline?)
        case connecting(address: Int)
        case connected(address: Int)
        case stopped
    }

    enum Action: Equatable {
        case none
        /// Open a connection to the address with this index, marking the CONNECT as a bridge's or not.
        case connect(address: Int, tryPrivate: Bool)
        /// Wake up (call ``tick(now:queued:lastTraffic:)``) at this time.
        case wake(at: NIODeadline)
        /// Close the connection (lazy and idle, or the main address answers again).
        case disconnect(why: String)
        /// See whether the first address accepts a TCP connection (round_robin false).
        case probePrimary
    }

    /// How often a bridge on a secondary address checks whether the first one is back.
    static let primaryProbeInterval = TimeAmount.seconds(5)

    let settings: Settings
    private(set) var phase = Phase.waiting(until: nil)
    /// The address of the current (or next) attempt.
    private(set) var address = 0
    /// Whether the remote broker accepted the bridge bit; a refusal (CONNACK "unacceptable
    /// protocol version") turns it off for the following attempts, as mosquitto does.
    private(set) var privateAccepted = true
    /// The wait before the next attempt after a failure.
    private(set) var delay: TimeAmount
    private var nextPrimaryProbe: NIODeadline?
    /// The main address answered: the connection closes and the next attempt goes there at once.
    private var returningToPrimary = false

    init(settings: Settings) {
        self.settings = settings
        switch settings.restartTimeout {
        case .constant(let seconds): delay = .seconds(Int64(seconds))
        case .backoff(let base, _): delay = .seconds(Int64(base))
        }
    }

    /// The broker started the bridge.
    mutating func start() -> Action {
        switch settings.startType {
        case .automatic, .once:
            return beginAttempt()
        case .lazy:
            phase = .waiting(until: nil)
            return .none
        }
    }

    /// Stops for good (broker shutdown).
    mutating func stop() {
        phase = .stopped
    }

    private mutating func beginAttempt() -> Action {
        phase = .connecting(address: address)
        return .connect(address: address, tryPrivate: settings.tryPrivate && privateAccepted)
    }

    /// The remote broker accepted the connection.
    mutating func connected(now: NIODeadline) {
        guard case .connecting(let address) = phase else { return }
        phase = .connected(address: address)
        resetDelay()
        nextPrimaryProbe = !settings.roundRobin && address != 0 ? now + Self.primaryProbeInterval : nil
    }

    /// An attempt failed (no TCP connection, TLS, a refused CONNACK) or an open connection
    /// ended. `refusedProtocolVersion`: the CONNACK said "unacceptable protocol version".
    mutating func connectionEnded(
        now: NIODeadline,
        refusedProtocolVersion: Bool = false,
        jitter: (ClosedRange<Int64>) -> Int64 = Int64.random(in:)
    ) -> Action {
        switch phase {
        case .stopped, .waiting:
            // Stopped, or a lazy bridge that closed an idle connection: nothing to retry.
            return .none
        case .connecting, .connected:
            break
        }
        if refusedProtocolVersion && settings.tryPrivate && privateAccepted {
            privateAccepted = false
        }
        nextPrimaryProbe = nil
        if returningToPrimary {
            returningToPrimary = false
            address = 0
            if settings.startType == .lazy {
                phase = .waiting(until: now)
                return .wake(at: now)
            }
            return beginAttempt()
        }
        if settings.startType == .once {
            phase = .waiting(until: nil)
            return .none
        }
        address = settings.addressCount > 0 ? (address + 1) % settings.addressCount : 0
        let wait = delay
        step(jitter: jitter)
        let due = now + wait
        phase = .waiting(until: due)
        return .wake(at: due)
    }

    /// A lazy bridge disconnected because it was idle: it waits for its threshold again.
    private mutating func idleDisconnected() {
        phase = .waiting(until: nil)
    }

    /// Called every second and at each ``Action/wake(at:)``: starts a due attempt (a lazy
    /// bridge only once `queued` reached its threshold), closes a lazy bridge idle since
    /// `lastTraffic`, and asks for a probe of the main address when one is due.
    mutating func tick(now: NIODeadline, queued: Int, lastTraffic: NIODeadline) -> Action {
        switch phase {
        case .stopped, .connecting:
            return .none
        case .waiting(let until):
            if settings.startType == .lazy {
                guard queued >= settings.threshold else { return .none }
                if let until, until > now { return .none }
                return beginAttempt()
            }
            guard let until, until <= now else { return .none }
            return beginAttempt()
        case .connected:
            if settings.startType == .lazy && now - lastTraffic >= settings.idleTimeout {
                idleDisconnected()
                return .disconnect(why: "idle for \(settings.idleTimeout.nanoseconds / 1_000_000_000) s (start_type lazy)")
            }
            if let probe = nextPrimaryProbe, probe <= now {
                nextPrimaryProbe = now + Self.primaryProbeInterval
                return .probePrimary
            }
            return .none
        }
    }

    /// The main address accepted a TCP connection while the bridge is on another one.
    mutating func primaryAnswered() -> Action {
        guard case .connected(let current) = phase, current != 0, !settings.roundRobin else { return .none }
        returningToPrimary = true
        return .disconnect(why: "the main address \(0) answers again (round_robin false)")
    }

    private mutating func resetDelay() {
        switch settings.restartTimeout {
        case .constant(let seconds): delay = .seconds(Int64(seconds))
        case .backoff(let base, _): delay = .seconds(Int64(base))
        }
    }

    /// "Decorrelated jitter": the next wait is random between the base and three times this
    /// one, at most the cap.
    private mutating func step(jitter: (ClosedRange<Int64>) -> Int64) {
        guard case .backoff(let base, let cap) = settings.restartTimeout else { return }
        let low = Int64(base) * 1000
        let high = max(low, delay.nanoseconds / 1_000_000 * 3)
        delay = .milliseconds(min(Int64(cap) * 1000, jitter(low...high)))
    }
}
