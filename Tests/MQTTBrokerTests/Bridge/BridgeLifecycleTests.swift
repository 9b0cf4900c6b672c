import NIOCore
import Testing

@testable import MQTTBroker

/// When a bridge connects, where, and when it tries again (`start_type`, `restart_timeout`,
/// `round_robin`, `try_private`), driven without I/O.
@Suite("Bridge lifecycle")
struct BridgeLifecycleTests {
    private func lifecycle(_ lines: String) throws -> BridgeLifecycle {
        let configuration = try MosquittoConfigParser.parse("connection t\ntopic #\n" + lines)
        return BridgeLifecycle(settings: .init(configuration.bridges[0]))
    }

    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    @Test("automatic: connects at once, and after a failure tries the next address after the restart timeout")
    func automaticFailover() throws {
        var bridge = try lifecycle("address a:1 b:2 c:3\nrestart_timeout 3")
        #expect(bridge.start() == .connect(address: 0, tryPrivate: true))
        #expect(bridge.connectionEnded(now: start) == .wake(at: start + .seconds(3)))
        #expect(bridge.tick(now: start + .seconds(2), queued: 0, lastTraffic: start) == .none)
        #expect(bridge.tick(now: start + .seconds(3), queued: 0, lastTraffic: start) == .connect(address: 1, tryPrivate: true))
        #expect(bridge.connectionEnded(now: start + .seconds(3)) == .wake(at: start + .seconds(6)))
        #expect(bridge.tick(now: start + .seconds(6), queued: 0, lastTraffic: start) == .connect(address: 2, tryPrivate: true))
        #expect(bridge.connectionEnded(now: start + .seconds(6)) == .wake(at: start + .seconds(9)))
        // Back to the first after the last.
        #expect(bridge.tick(now: start + .seconds(9), queued: 0, lastTraffic: start) == .connect(address: 0, tryPrivate: true))
    }

    @Test("the backoff: decorrelated jitter between the base and three times the last wait, never above the cap, back to the base once connected")
    func backoff() throws {
        var bridge = try lifecycle("address a\nrestart_timeout 2 10")
        _ = bridge.start()
        var now = start
        var waits: [Int64] = []
        var ranges: [ClosedRange<Int64>] = []
        for _ in 0..<6 {
            // The highest value the jitter allows, so the cap shows.
            guard
                case .wake(let due) = bridge.connectionEnded(
                    now: now,
                    jitter: {
                        ranges.append($0)
                        return $0.upperBound
                    }
                )
            else {
                Issue.record("no wake-up")
                return
            }
            waits.append((due - now).nanoseconds / 1_000_000)
            now = due
            _ = bridge.tick(now: now, queued: 0, lastTraffic: start)
        }
        #expect(waits == [2000, 6000, 10_000, 10_000, 10_000, 10_000])
        #expect(ranges.allSatisfy { $0.lowerBound == 2000 })
        bridge.connected(now: now)
        #expect(bridge.delay == .seconds(2))
    }

    @Test("once: never tries again after the connection fails")
    func once() throws {
        var bridge = try lifecycle("address a b\nstart_type once")
        #expect(bridge.start() == .connect(address: 0, tryPrivate: true))
        #expect(bridge.connectionEnded(now: start) == .none)
        #expect(bridge.tick(now: start + .seconds(3600), queued: 1000, lastTraffic: start) == .none)
    }

    @Test("lazy: connects once threshold messages wait, disconnects after idle_timeout without traffic")
    func lazy() throws {
        var bridge = try lifecycle("address a\nstart_type lazy\nthreshold 5\nidle_timeout 30")
        #expect(bridge.start() == .none)
        #expect(bridge.tick(now: start, queued: 4, lastTraffic: start) == .none)
        #expect(bridge.tick(now: start, queued: 5, lastTraffic: start) == .connect(address: 0, tryPrivate: true))
        bridge.connected(now: start)
        #expect(bridge.tick(now: start + .seconds(29), queued: 0, lastTraffic: start) == .none)
        guard case .disconnect = bridge.tick(now: start + .seconds(30), queued: 0, lastTraffic: start) else {
            Issue.record("an idle lazy bridge did not disconnect")
            return
        }
        // The idle close is no failure: no retry is scheduled, the threshold decides again.
        #expect(bridge.connectionEnded(now: start + .seconds(30)) == .none)
        #expect(bridge.tick(now: start + .seconds(31), queued: 4, lastTraffic: start) == .none)
        #expect(bridge.tick(now: start + .seconds(32), queued: 6, lastTraffic: start) == .connect(address: 0, tryPrivate: true))
    }

    @Test("try_private: a CONNACK refusing the protocol level turns the bridge bit off for later attempts; 5.0 never sets it")
    func tryPrivate() throws {
        var bridge = try lifecycle("address a\nrestart_timeout 1")
        #expect(bridge.start() == .connect(address: 0, tryPrivate: true))
        _ = bridge.connectionEnded(now: start, refusedProtocolVersion: true)
        #expect(bridge.tick(now: start + .seconds(1), queued: 0, lastTraffic: start) == .connect(address: 0, tryPrivate: false))

        var off = try lifecycle("address a\ntry_private false")
        #expect(off.start() == .connect(address: 0, tryPrivate: false))
        var five = try lifecycle("address a\nbridge_protocol_version mqttv50")
        #expect(five.start() == .connect(address: 0, tryPrivate: false))
    }

    @Test("round_robin false: on a secondary address it probes the main one every 5 s and goes back once it answers")
    func backToPrimary() throws {
        var bridge = try lifecycle("address main backup\nrestart_timeout 1")
        _ = bridge.start()
        _ = bridge.connectionEnded(now: start)
        #expect(bridge.tick(now: start + .seconds(1), queued: 0, lastTraffic: start) == .connect(address: 1, tryPrivate: true))
        bridge.connected(now: start + .seconds(1))
        #expect(bridge.tick(now: start + .seconds(5), queued: 0, lastTraffic: start) == .none)
        #expect(bridge.tick(now: start + .seconds(6), queued: 0, lastTraffic: start) == .probePrimary)
        #expect(bridge.tick(now: start + .seconds(7), queued: 0, lastTraffic: start) == .none)
        guard case .disconnect = bridge.primaryAnswered() else {
            Issue.record("the bridge stayed on its backup address")
            return
        }
        // The connection closes: the next attempt goes to the main address at once.
        #expect(bridge.connectionEnded(now: start + .seconds(7)) == .connect(address: 0, tryPrivate: true))
    }

    @Test("round_robin true: stays on the address that works, never probes")
    func roundRobin() throws {
        var bridge = try lifecycle("address main backup\nround_robin true\nrestart_timeout 1")
        _ = bridge.start()
        _ = bridge.connectionEnded(now: start)
        _ = bridge.tick(now: start + .seconds(1), queued: 0, lastTraffic: start)
        bridge.connected(now: start + .seconds(1))
        #expect(bridge.tick(now: start + .seconds(60), queued: 0, lastTraffic: start) == .none)
        #expect(bridge.primaryAnswered() == .none)
        // When it fails, the next address is the first again.
        #expect(bridge.connectionEnded(now: start + .seconds(61)) == .wake(at: start + .seconds(62)))
        #expect(bridge.tick(now: start + .seconds(62), queued: 0, lastTraffic: start) == .connect(address: 0, tryPrivate: true))
    }

    @Test("a stopped bridge does nothing more")
    func stopped() throws {
        var bridge = try lifecycle("address a")
        _ = bridge.start()
        bridge.stop()
        #expect(bridge.connectionEnded(now: start) == .none)
        #expect(bridge.tick(now: start + .seconds(100), queued: 100, lastTraffic: start) == .none)
    }
}
