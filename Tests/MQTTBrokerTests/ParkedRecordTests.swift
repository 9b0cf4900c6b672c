import DatabusTestSupport
import Logging
import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

/// What a parked connection keeps is kept small (``PeerAddress`` inline, limits shared through
/// ``SharedValues``) without losing anything: the peer in the log lines, each session's limits.
@Suite("A parked connection's compact record")
struct ParkedRecordTests {
    @Test("an IPv4 or IPv6 peer comes back from its inline form as the same address and port")
    func peerAddressRoundTrip() throws {
        for (ip, port) in [("192.0.2.7", 1883), ("127.0.0.1", 65535), ("2001:db8::17", 8883), ("::1", 1), ("::ffff:10.1.2.3", 40000)] {
            let address = try SocketAddress(ipAddress: ip, port: port)
            let peer = try #require(PeerAddress(address))
            let back = try #require(peer.socketAddress)
            #expect(back == address)
            #expect(back.port == port)
            #expect(back.ipAddress == address.ipAddress)
        }
        #expect(PeerAddress(try SocketAddress(ipAddress: "10.0.0.1", port: 1)) != PeerAddress(try SocketAddress(ipAddress: "10.0.0.2", port: 1)))
        #expect(PeerAddress(try SocketAddress(unixDomainSocketPath: "/tmp/databus-peer.sock")) == nil)
    }

    @Test("sessions with the same limits share one copy; different limits stay apart; a full table starts over")
    func limitsShared() {
        let values = SharedValues<Session.Limits>()
        let limits = Session.Limits(maxInflight: 20, maxQueuedMessages: nil, maxQueuedBytes: 0)
        var other = limits
        other.maxQueuedMessages = 5
        #expect(values.share(limits) === values.share(limits))
        #expect(values.share(limits) !== values.share(other))
        #expect(values.share(other).value.maxQueuedMessages == 5)
        // Past the table's capacity every value is still its own, only not kept in the table.
        for count in 0..<(SharedValues<Session.Limits>.capacity + 10) {
            var distinct = limits
            distinct.maxInflight = 1000 + count
            #expect(values.share(distinct).value == distinct)
        }
        #expect(values.share(limits).value == limits)
        // A full table starts over rather than stop sharing (reloads add values for ever).
        var late = limits
        late.maxInflight = 99_999
        #expect(values.share(late) === values.share(late))
    }

    @Test("a session keeps the queue limit it was given while others change theirs")
    func sessionLimitsIndependent() throws {
        let environment = SessionEnvironment(
            statistics: BrokerStatistics(),
            store: nil,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        )
        let strict = Session.Limits(maxInflight: 20, maxQueuedMessages: 2, maxQueuedBytes: 0, backpressure: false)
        let first = Session(clientID: "first", limits: strict, environment: environment)
        let second = Session(clientID: "second", limits: strict, environment: environment)
        var relaxed = strict
        relaxed.maxQueuedMessages = 4
        second.updateLimits(relaxed)
        #expect(first.queueRoom.count == 2)
        #expect(second.queueRoom.count == 4)
    }
}
