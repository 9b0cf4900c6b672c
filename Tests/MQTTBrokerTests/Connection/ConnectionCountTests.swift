import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import NIOPosix
import Testing

/// max_connections counts each open connection once: a connection refused at the limit takes
/// no slot and frees none, and every way a connection ends (the client leaves, the broker
/// closes it, a takeover, a failed TLS handshake) gives its slot back exactly once.
@Suite("Connection count", .timeLimit(.minutes(2)))
struct ConnectionCountTests {
    /// Connects and sends CONNECT as `clientIdentifier`: the connection when the broker
    /// accepts it, nil when it closes the socket without an answer (refused at the limit).
    private func attempt(port: Int, _ clientIdentifier: String) async throws -> CodecConnection? {
        let connection = try await CodecConnection.connect(port: port, version: .v5)
        try? await connection.send(.connect(ConnectPacket(clientIdentifier: clientIdentifier, keepAlive: 0)))
        if case .connack(let connack)? = try? await connection.receive(within: 5), connack.reasonCode == .success {
            return connection
        }
        await connection.close()
        return nil
    }

    /// Whether the broker refuses a new connection now.
    private func refused(port: Int, _ clientIdentifier: String) async throws -> Bool {
        guard let connection = try await attempt(port: port, clientIdentifier) else { return true }
        await connection.close()
        return false
    }

    /// Connects as soon as a slot is free (a connection that ended leaves the count a moment later).
    private func connectWhenFree(port: Int, _ clientIdentifier: String, within seconds: Int = 5) async throws -> CodecConnection {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if let connection = try await attempt(port: port, clientIdentifier) { return connection }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw InteropError("\(clientIdentifier): no free connection slot within \(seconds) s")
    }

    @Test("a connection refused at the limit frees no slot; one that leaves frees exactly one")
    func refusedFreesNothing() async throws {
        try await withBroker(.testing { $0.listeners[0].maxConnections = 1 }) { port in
            let first = try await connectWhenFree(port: port, "first")
            for number in 1...3 {
                #expect(try await refused(port: port, "refused-\(number)"), "attempt \(number) got in beside the first")
            }
            try await first.disconnect()

            let second = try await connectWhenFree(port: port, "second")
            for number in 1...3 {
                #expect(try await refused(port: port, "refused-again-\(number)"), "attempt \(number) got in beside the second")
            }
            // The client drops the socket without DISCONNECT.
            await second.close()
            let third = try await connectWhenFree(port: port, "third")
            defer { Task { await third.close() } }
            #expect(try await refused(port: port, "beside-third"))
        }
    }

    @Test("every way a connection ends gives its slot back: afterwards exactly max_connections clients get in")
    func slotsComeBack() async throws {
        try await withBroker(.testing { $0.listeners[0].maxConnections = 2 }) { port in
            for round in 1...3 {
                // Closed by the client before CONNECT.
                let silent = try await CodecConnection.connect(port: port, version: .v5)
                await silent.close()
                // A first byte that does not decode: the broker closes.
                let garbage = try await CodecConnection.connect(port: port, version: .v5)
                try? await garbage.send(bytes: [0x00, 0x00])
                _ = try? await garbage.packetsUntilClosed()
                await garbage.close()
                // DISCONNECT, with more bytes behind it in the same write.
                let leaving = try await connectWhenFree(port: port, "leaving-\(round)")
                try await leaving.send([.disconnect(DisconnectPacket()), .pingreq, .pingreq])
                _ = try await leaving.packetsUntilClosed()
                // A protocol error: the broker closes after DISCONNECT 0x82.
                let erring = try await connectWhenFree(port: port, "erring-\(round)")
                try await erring.send(.connect(ConnectPacket(clientIdentifier: "erring-\(round)")))
                #expect(try await erring.closedByBroker() == .protocolError)
                // A takeover: the old connection is closed by the broker, the new one by the client.
                let old = try await connectWhenFree(port: port, "same")
                let new = try await connectWhenFree(port: port, "same")
                #expect(try await old.closedByBroker() == .sessionTakenOver)
                await new.close()
                // A protocol version the broker refuses. (The slot of the connections just closed
                // may not be free yet: then this one is refused at the limit, which frees nothing.)
                let ancient = try await CodecConnection.connect(port: port, version: .v3_1_1)
                try? await ancient.send(bytes: [0x10, 0x0F, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x03, 0x02, 0x00, 0x3C, 0x00, 0x03, 0x6F, 0x6C, 0x64])
                _ = try? await ancient.packetsUntilClosed()
                await ancient.close()
            }

            let one = try await connectWhenFree(port: port, "one")
            defer { Task { await one.close() } }
            let two = try await connectWhenFree(port: port, "two")
            defer { Task { await two.close() } }
            #expect(try await refused(port: port, "three"), "a third client got in with max_connections 2")
        }
    }

    @Test("TLS listener: connections whose handshake fails give their slot back; the limit still holds")
    func tlsHandshakeFailuresFreeSlots() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let configuration = BrokerConfiguration.testing {
            $0.listeners[0].tls.certFile = files.serverCertificate
            $0.listeners[0].tls.keyFile = files.serverKey
            $0.listeners[0].maxConnections = 1
        }
        try await withBroker(configuration) { port in
            for number in 1...4 {
                // Plain MQTT to a TLS port: the handshake fails and the broker closes.
                let plain = try await CodecConnection.connect(port: port, version: .v5)
                try? await plain.send(.connect(ConnectPacket(clientIdentifier: "plain-\(number)")))
                _ = try? await plain.packetsUntilClosed()
                await plain.close()
                // A socket closed before it says anything.
                let silent = try await CodecConnection.connect(port: port, version: .v5)
                await silent.close()
            }

            let options = TLSClientOptions(caFile: files.ca)
            let deadline = ContinuousClock.now + .seconds(10)
            var published = try await mosquittoPublish(port: port, options, clientID: "tls-client")
            while published.status != 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                published = try await mosquittoPublish(port: port, options, clientID: "tls-client")
            }
            #expect(published.status == 0, "no TLS client got in after failed handshakes: \(published.errorOutput)")

            // A socket in the middle of its handshake holds the only slot.
            let holder = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get()
            try await Task.sleep(for: .milliseconds(300))
            let beside = try await mosquittoPublish(port: port, options, clientID: "beside-holder")
            #expect(beside.status != 0, "a TLS client got in beside another connection with max_connections 1")
            try? await holder.close()
        }
    }
}
