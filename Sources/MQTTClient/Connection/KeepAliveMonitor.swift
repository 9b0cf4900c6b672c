/// Decides when to send PINGREQ and when a connection is dead, from ticks every half keep-alive.
///
/// Sending a packet at least every keep-alive interval keeps the broker from closing the
/// connection; a tick with nothing sent or nothing received sends PINGREQ, and a PINGREQ
/// unanswered for the ping timeout means the connection is dead.
struct KeepAliveMonitor {
    enum Action: Equatable {
        case none
        case sendPing
        case timedOut
    }

    let tickInterval: Duration
    let pingTimeout: Duration
    private var sentSinceTick = false
    private var receivedSinceTick = false
    private var pingOutstandingFor: Duration?

    /// - Parameters:
    ///   - keepAlive: the negotiated keep alive, more than zero.
    ///   - pingTimeout: how long PINGRESP may take.
    init(keepAlive: Duration, pingTimeout: Duration) {
        self.tickInterval = keepAlive / 2
        self.pingTimeout = pingTimeout
    }

    mutating func packetSent() { sentSinceTick = true }

    mutating func packetReceived() { receivedSinceTick = true }

    mutating func pingResponseReceived() {
        receivedSinceTick = true
        pingOutstandingFor = nil
    }

    /// Called every ``tickInterval``.
    mutating func tick() -> Action {
        defer {
            sentSinceTick = false
            receivedSinceTick = false
        }
        if let waited = pingOutstandingFor {
            let total = waited + tickInterval
            if total >= pingTimeout { return .timedOut }
            pingOutstandingFor = total
            return .none
        }
        guard sentSinceTick && receivedSinceTick else {
            pingOutstandingFor = .zero
            return .sendPing
        }
        return .none
    }
}
