import DequeModule
import Foundation

/// The camera agent's end-to-end delivery rules for detections, as a state machine without I/O.
///
/// A detection is tracked from the moment it is journaled until the server acknowledges it on
/// `detection/ack`. At most ``Policy/window`` detections sit in the MQTT outbox at once; the rest
/// wait in the journal (the backlog). Once the broker has a detection (PUBACK) the agent waits
/// ``Policy/ackTimeout`` for the server's ack, then sends it again, with the wait doubling up to
/// ``Policy/maximumAckTimeout``. Waits do not run out while the broker is unreachable: they start
/// again when the connection returns, since the broker then delivers acks the server sent meanwhile.
/// `stored` and `duplicate` acks end the tracking; so does `rejected`, which is not retried.
public struct DetectionTracker: Sendable {
    public struct Policy: Sendable, Hashable {
        /// How long to wait for the server's ack after the broker has the detection.
        public var ackTimeout: TimeInterval
        /// The longest wait, reached by doubling after each re-send.
        public var maximumAckTimeout: TimeInterval
        /// The most detections in the MQTT outbox at once.
        public var window: Int

        public init(ackTimeout: TimeInterval = 10, maximumAckTimeout: TimeInterval = 300, window: Int = 256) {
            self.ackTimeout = max(0.001, ackTimeout)
            self.maximumAckTimeout = max(self.ackTimeout, maximumAckTimeout)
            self.window = max(1, window)
        }

        /// The wait after send number `attempt` (from 1).
        public func timeout(attempt: Int) -> TimeInterval {
            var wait = ackTimeout
            for _ in 1..<max(1, attempt) where wait < maximumAckTimeout { wait *= 2 }
            return min(wait, maximumAckTimeout)
        }
    }

    /// Where one detection is.
    public enum State: Sendable, Hashable {
        /// In the journal, waiting for room in the outbox; `backlog` when it has never been in
        /// the outbox (its journal row says so), false for a re-send.
        case waiting(backlog: Bool)
        /// In the MQTT outbox, not yet acknowledged by the broker.
        case inOutbox
        /// The broker has it; the server's ack is due by `deadline`.
        case awaitingAck(deadline: Date)
    }

    /// How an ack ended a detection's tracking.
    public enum AckOutcome: Sendable, Hashable {
        /// `stored` or `duplicate`: delivered.
        case delivered
        /// `rejected`: not retried.
        case rejected
        /// Not tracked (acknowledged before, or another agent's).
        case unknown
    }

    /// A detection to put into the outbox.
    public struct Send: Sendable, Hashable {
        public var messageID: String
        /// Which send this is (1 for the first).
        public var attempt: Int
        /// Whether it comes from the backlog: its journal row should now say it is outboxed.
        public var fromBacklog: Bool

        public init(messageID: String, attempt: Int, fromBacklog: Bool) {
            self.messageID = messageID
            self.attempt = attempt
            self.fromBacklog = fromBacklog
        }
    }

    private struct Entry: Sendable {
        var state: State
        var attempt: Int
    }

    public let policy: Policy
    private var entries: [String: Entry] = [:]
    private var waitingOrder: Deque<String> = []
    public private(set) var inOutboxCount = 0
    public private(set) var isConnected = false
    /// Detections re-sent because their ack did not come in time.
    public private(set) var resentCount = 0

    public init(policy: Policy = Policy()) {
        self.policy = policy
    }

    /// Detections tracked: not yet acknowledged by the server.
    public var count: Int { entries.count }

    /// Where a detection is, when it is tracked.
    public func state(of messageID: String) -> State? { entries[messageID]?.state }

    /// Detections waiting in the journal for room in the outbox.
    public var waitingCount: Int { entries.values.count { if case .waiting = $0.state { true } else { false } } }

    /// Detections the broker has, waiting for the server's ack.
    public var awaitingAckCount: Int { entries.values.count { if case .awaitingAck = $0.state { true } else { false } } }

    /// Tracks a new detection. Returns true when it goes into the outbox now (journal it as
    /// outboxed, then enqueue it), false when it waits in the backlog (journal it as such).
    /// A detection already tracked is not tracked twice: returns `nil`.
    public mutating func submit(_ messageID: String) -> Bool? {
        guard entries[messageID] == nil else { return nil }
        if inOutboxCount < policy.window && waitingOrder.isEmpty {
            entries[messageID] = Entry(state: .inOutbox, attempt: 1)
            inOutboxCount += 1
            return true
        }
        entries[messageID] = Entry(state: .waiting(backlog: true), attempt: 0)
        waitingOrder.append(messageID)
        return false
    }

    /// Stops tracking a detection that could not be journaled.
    public mutating func forget(_ messageID: String) {
        guard let entry = entries.removeValue(forKey: messageID) else { return }
        if entry.state == .inOutbox { inOutboxCount -= 1 }
    }

    /// The clock the agent gives the tracker: monotonic, as a `Date` counted from an arbitrary
    /// origin. A wall clock stepped back (an NTP correction, a camera's clock set right) would
    /// otherwise hold every re-send back by as much; only differences of it mean anything.
    public static func now() -> Date {
        Date(timeIntervalSinceReferenceDate: Double(DispatchTime.now().uptimeNanoseconds) / 1e9)
    }

    /// Takes up what the journal held when the agent started: `outboxed` detections may be in the
    /// restored outbox, so they wait one ack timeout before being sent again; `backlog` ones wait
    /// for room in the outbox.
    public mutating func restore(outboxed: [String], backlog: [String], now: Date) {
        for id in outboxed where entries[id] == nil {
            entries[id] = Entry(state: .awaitingAck(deadline: now.addingTimeInterval(policy.timeout(attempt: 1))), attempt: 1)
        }
        for id in backlog where entries[id] == nil {
            entries[id] = Entry(state: .waiting(backlog: true), attempt: 0)
            waitingOrder.append(id)
        }
    }

    /// The broker acknowledged a send (PUBACK): the server's ack is due within the timeout.
    public mutating func published(_ messageID: String, now: Date) {
        guard var entry = entries[messageID], entry.state == .inOutbox else { return }
        inOutboxCount -= 1
        entry.state = .awaitingAck(deadline: now.addingTimeInterval(policy.timeout(attempt: entry.attempt)))
        entries[messageID] = entry
    }

    /// A send did not reach the broker (refused, or the client stopped): treated as sent, so it
    /// is sent again after the timeout.
    public mutating func publishFailed(_ messageID: String, now: Date) {
        published(messageID, now: now)
    }

    /// The server answered on `detection/ack`.
    public mutating func acknowledged(_ messageID: String, rejected: Bool) -> AckOutcome {
        guard let entry = entries.removeValue(forKey: messageID) else { return .unknown }
        if entry.state == .inOutbox { inOutboxCount -= 1 }
        return rejected ? .rejected : .delivered
    }

    /// The connection to the broker came or went. When it comes back every pending ack wait
    /// starts again, so that acks the broker kept for us can arrive before anything is re-sent.
    public mutating func connectionChanged(connected: Bool, now: Date) {
        isConnected = connected
        guard connected else { return }
        for (id, entry) in entries {
            guard case .awaitingAck(let deadline) = entry.state else { continue }
            let restarted = now.addingTimeInterval(policy.timeout(attempt: entry.attempt))
            if restarted > deadline { entries[id]?.state = .awaitingAck(deadline: restarted) }
        }
    }

    /// Moves detections whose ack is overdue to the front of the queue for a re-send (only while
    /// connected), then returns what fits into the outbox now, oldest first.
    public mutating func due(now: Date) -> [Send] {
        if isConnected {
            var overdue: [(String, Date)] = []
            for (id, entry) in entries {
                if case .awaitingAck(let deadline) = entry.state, deadline <= now { overdue.append((id, deadline)) }
            }
            for (id, _) in overdue.sorted(by: { $0.1 > $1.1 }) {
                entries[id]?.state = .waiting(backlog: false)
                waitingOrder.prepend(id)
                resentCount += 1
            }
        }
        var sends: [Send] = []
        while inOutboxCount < policy.window, let id = waitingOrder.popFirst() {
            guard var entry = entries[id], case .waiting(let backlog) = entry.state else { continue }
            entry.state = .inOutbox
            entry.attempt += 1
            entries[id] = entry
            inOutboxCount += 1
            sends.append(Send(messageID: id, attempt: entry.attempt, fromBacklog: backlog))
        }
        return sends
    }

    /// The earliest ack deadline, for scheduling the next check.
    public var nextDeadline: Date? {
        entries.values.compactMap { if case .awaitingAck(let deadline) = $0.state { deadline } else { nil } }.min()
    }
}
