import EdgeAgents
import Foundation
import Testing

/// The ack and re-send rules of the camera agent, driven without a broker.
@Suite("Camera agent: the detection tracker's ack and re-send rules")
struct DetectionTrackerTests {
    let start = Date(timeIntervalSince1970: 1_700_000_000)

    func tracker(timeout: TimeInterval = 10, maximum: TimeInterval = 80, window: Int = 3) -> DetectionTracker {
        var tracker = DetectionTracker(policy: DetectionTracker.Policy(ackTimeout: timeout, maximumAckTimeout: maximum, window: window))
        tracker.connectionChanged(connected: true, now: start)
        return tracker
    }

    @Test("a detection goes to the outbox while the window has room, then waits in the backlog")
    func windowThenBacklog() {
        var tracker = tracker(window: 2)
        #expect(tracker.submit("a") == true)
        #expect(tracker.submit("b") == true)
        #expect(tracker.submit("c") == false)
        #expect(tracker.submit("a") == nil)
        #expect(tracker.inOutboxCount == 2)
        #expect(tracker.state(of: "c") == .waiting(backlog: true))
        // The broker takes "a": its place goes to "c", which is marked as leaving the backlog.
        tracker.published("a", now: start)
        #expect(tracker.due(now: start) == [DetectionTracker.Send(messageID: "c", attempt: 1, fromBacklog: true)])
        #expect(tracker.state(of: "c") == .inOutbox)
        #expect(tracker.state(of: "a") == .awaitingAck(deadline: start.addingTimeInterval(10)))
    }

    @Test("no ack within the timeout: sent again, with the wait doubling up to the maximum")
    func resendWithBackoff() {
        var tracker = tracker(timeout: 10, maximum: 25)
        _ = tracker.submit("a")
        tracker.published("a", now: start)
        #expect(tracker.due(now: start.addingTimeInterval(9.9)).isEmpty)
        let first = tracker.due(now: start.addingTimeInterval(10))
        #expect(first == [DetectionTracker.Send(messageID: "a", attempt: 2, fromBacklog: false)])
        tracker.published("a", now: start.addingTimeInterval(10))
        #expect(tracker.state(of: "a") == .awaitingAck(deadline: start.addingTimeInterval(30)))
        #expect(tracker.due(now: start.addingTimeInterval(30)).map(\.attempt) == [3])
        tracker.published("a", now: start.addingTimeInterval(30))
        // 10, 20, then capped at 25.
        #expect(tracker.state(of: "a") == .awaitingAck(deadline: start.addingTimeInterval(55)))
        #expect(tracker.resentCount == 2)
    }

    @Test("stored and duplicate acks deliver, rejected ends without a re-send, unknown ids are ignored")
    func acks() {
        var tracker = tracker()
        for id in ["a", "b", "c"] { _ = tracker.submit(id) }
        for id in ["a", "b", "c"] { tracker.published(id, now: start) }
        #expect(tracker.acknowledged("a", rejected: false) == .delivered)
        #expect(tracker.acknowledged("b", rejected: true) == .rejected)
        #expect(tracker.acknowledged("a", rejected: false) == .unknown)
        #expect(tracker.acknowledged("zzz", rejected: false) == .unknown)
        #expect(tracker.count == 1)
        #expect(tracker.due(now: start.addingTimeInterval(100)).map(\.messageID) == ["c"])
    }

    @Test("an ack that overtakes the broker's PUBACK frees the outbox place once")
    func ackBeforePuback() {
        var tracker = tracker(window: 1)
        _ = tracker.submit("a")
        #expect(tracker.submit("b") == false)
        #expect(tracker.acknowledged("a", rejected: false) == .delivered)
        tracker.published("a", now: start)
        #expect(tracker.inOutboxCount == 0)
        #expect(tracker.due(now: start).map(\.messageID) == ["b"])
        #expect(tracker.inOutboxCount == 1)
    }

    @Test("waits do not run out while disconnected, and start again when the connection returns")
    func disconnectedWaits() {
        var tracker = tracker(timeout: 10)
        _ = tracker.submit("a")
        tracker.published("a", now: start)
        tracker.connectionChanged(connected: false, now: start.addingTimeInterval(1))
        #expect(tracker.due(now: start.addingTimeInterval(3600)).isEmpty)
        tracker.connectionChanged(connected: true, now: start.addingTimeInterval(3600))
        #expect(tracker.due(now: start.addingTimeInterval(3605)).isEmpty)
        #expect(tracker.due(now: start.addingTimeInterval(3610)).map(\.messageID) == ["a"])
    }

    @Test("after a restart, outboxed detections wait one timeout (they may be in the restored outbox); backlog ones go as room allows")
    func restore() {
        var tracker = tracker(timeout: 10, window: 2)
        tracker.restore(outboxed: ["a", "b"], backlog: ["c", "d", "e"], now: start)
        #expect(tracker.count == 5)
        #expect(tracker.due(now: start).map(\.messageID) == ["c", "d"])
        #expect(tracker.acknowledged("a", rejected: false) == .delivered)
        tracker.published("c", now: start.addingTimeInterval(1))
        #expect(tracker.due(now: start.addingTimeInterval(1)).map(\.messageID) == ["e"])
        tracker.published("d", now: start.addingTimeInterval(1))
        tracker.published("e", now: start.addingTimeInterval(1))
        // "b" had no ack within one timeout of the restart: sent again; the others are not due yet.
        #expect(tracker.due(now: start.addingTimeInterval(10)).map(\.messageID) == ["b"])
        #expect(tracker.state(of: "c") == .awaitingAck(deadline: start.addingTimeInterval(11)))
    }

    @Test("a detection that could not be journaled is forgotten and frees its place")
    func forget() {
        var tracker = tracker(window: 1)
        _ = tracker.submit("a")
        tracker.forget("a")
        #expect(tracker.count == 0)
        #expect(tracker.submit("b") == true)
    }
}
