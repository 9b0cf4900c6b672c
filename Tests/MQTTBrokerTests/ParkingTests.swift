import DatabusTestSupport
import Foundation
import Logging
import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

/// Idle plain-TCP connections park outside SwiftNIO (`park_idle_connections`) and come back
/// when anything happens: nothing a client sends or is sent is lost or changed by it.
@Suite("Parking idle connections")
struct ParkingTests {
    @Test("an idle subscriber parks, its PINGREQ is answered from the lot, and a message brings it back, again and again")
    func parkPingAndWake() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "parked-sub", keepAlive: 60)
            try await subscriber.subscribe("park/#", qos: .atLeastOnce)
            try await waitParked(broker, 1)
            // Answered while parked: the connection stays in the lot.
            #expect(try await subscriber.roundTrip().isEmpty)
            try await Task.sleep(for: .milliseconds(300))
            #expect(parked(broker) == 1)
            for round in 1...3 {
                let publisher = try await connectAccepted(port: port, "parked-pub-\(round)")
                #expect(try await publisher.publish("park/\(round)", "plate \(round)", qos: .atLeastOnce, packetIdentifier: 1) == .success)
                let publish = try await subscriber.receivePublish()
                #expect(publish.topicName == "park/\(round)")
                #expect(String(buffer: publish.payload) == "plate \(round)")
                try await subscriber.acknowledge(publish)
                try await publisher.disconnect()
                await publisher.close()
                try await waitParked(broker, 1)
            }
            #expect(try await subscriber.roundTrip().isEmpty)
            await subscriber.close()
        }
    }

    @Test("a parked client's QoS 1 and QoS 2 publishes are acknowledged and routed")
    func parkedPublisher() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "watcher")
            try await subscriber.subscribe("lpr/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "camera")
            try await waitParked(broker, 2)
            #expect(try await publisher.publish("lpr/a", "one", qos: .atLeastOnce, packetIdentifier: 7) == .success)
            try await waitParked(broker, 2)
            #expect(try await publisher.publish("lpr/b", "two", qos: .exactlyOnce, packetIdentifier: 8) == .success)
            var received: [String] = []
            for _ in 0..<2 {
                let publish = try await subscriber.receivePublish()
                received.append(String(buffer: publish.payload))
                try await subscriber.acknowledge(publish)
            }
            #expect(received == ["one", "two"])
            await publisher.close()
            await subscriber.close()
        }
    }

    @Test("a parked client silent past its keep alive is closed with 0x8D and its will published")
    func parkedKeepAliveExpires() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "will-watcher")
            let will = ConnectPacket.Will(topic: "wills/cam", payload: ByteBuffer(string: "offline"), qos: .atLeastOnce)
            let silent = try await connectAccepted(port: port, "silent-cam", keepAlive: 3, will: will)
            try await waitParked(broker, 2)
            let started = ContinuousClock.now
            #expect(try await silent.closedByBroker(within: 10) == .keepAliveTimeout)
            #expect(ContinuousClock.now - started < .seconds(6))
            let publish = try await watcher.receivePublish(within: 5)
            #expect(publish.topicName == "wills/cam")
            #expect(String(buffer: publish.payload) == "offline")
            await silent.close()
            await watcher.close()
        }
    }

    @Test("a parked client that goes away has its will published at once")
    func parkedClientGoesAway() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "gone-watcher")
            let will = ConnectPacket.Will(topic: "wills/gone", payload: ByteBuffer(string: "lost"), qos: .atLeastOnce)
            let leaving = try await connectAccepted(port: port, "gone-cam", keepAlive: 60, will: will)
            try await waitParked(broker, 2)
            await leaving.close()
            let publish = try await watcher.receivePublish(within: 5)
            #expect(publish.topicName == "wills/gone")
            await watcher.close()
        }
    }

    @Test("a parked connection taken over by a new one with its client id is told 0x8E and closed; the session goes on")
    func parkedTakeover() async throws {
        try await withParkingBroker { port, broker in
            let first = try await connectAccepted(port: port, "twin", cleanStart: false, properties: [.sessionExpiryInterval(300)])
            try await first.subscribe("twin/#", qos: .atLeastOnce)
            try await waitParked(broker, 1)
            let (second, connack) = try await connect(port: port, "twin", cleanStart: false, properties: [.sessionExpiryInterval(300)])
            #expect(connack.reasonCode == .success)
            #expect(connack.sessionPresent)
            #expect(try await first.closedByBroker() == .sessionTakenOver)
            let publisher = try await connectAccepted(port: port, "twin-pub")
            try await publisher.publish("twin/x", "after takeover", qos: .atLeastOnce, packetIdentifier: 1)
            let publish = try await second.receivePublish()
            #expect(String(buffer: publish.payload) == "after takeover")
            await first.close()
            await second.close()
            await publisher.close()
        }
    }

    @Test("a parked 5.0 client is told 0x8B when the broker shuts down")
    func parkedShutdown() async throws {
        let configuration = BrokerConfiguration.testing { $0.parkIdleConnections = 1 }
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let addresses = try await broker.start()
        let port = try #require(addresses.first?.port)
        let client = try await connectAccepted(port: port, "shutdown-cam", keepAlive: 60)
        do {
            try await waitParked(broker, 1)
        } catch {
            await broker.shutdown()
            throw error
        }
        async let reason = client.closedByBroker(within: 10)
        await broker.shutdown()
        #expect(try await reason == .serverShuttingDown)
        await client.close()
    }

    @Test("a packet sent in pieces across the parking delay is not parked half-read")
    func partPacketDoesNotPark() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "pieces-sub")
            try await subscriber.subscribe("pieces/#", qos: .atLeastOnce)
            let raw = try await RawConnection.connect(port: port)
            try await raw.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "pieces-pub", keepAlive: 60)))
            guard case .connack = try await raw.receive(within: 5) else { throw InteropError("no CONNACK") }
            var encoded = ByteBuffer()
            let publish = PublishPacket(topicName: "pieces/a", payload: ByteBuffer(string: "whole"), qos: .atLeastOnce, packetIdentifier: 3)
            try MQTTPacket.publish(publish).write(to: &encoded, version: .v5)
            let bytes = Array(encoded.readableBytesView)
            try await raw.send(bytes: Array(bytes[..<5]))
            // Both the subscriber and the publisher with its part packet stay quiet beyond the delay:
            // only the subscriber parks.
            try await waitParked(broker, 1)
            try await Task.sleep(for: .seconds(2))
            #expect(parked(broker) == 1)
            try await raw.send(bytes: Array(bytes[5...]))
            guard case .puback(let ack) = try await raw.receive(within: 5) else { throw InteropError("no PUBACK") }
            #expect(ack.packetIdentifier == 3)
            let received = try await subscriber.receivePublish()
            #expect(String(buffer: received.payload) == "whole")
            await raw.close()
            await subscriber.close()
        }
    }

    @Test("many connections park and all come back for one message each")
    func manyParkAndWake() async throws {
        try await withParkingBroker { port, broker in
            var subscribers: [CodecConnection] = []
            for index in 0..<40 {
                let client = try await connectAccepted(port: port, "fleet-\(index)", keepAlive: 60)
                try await client.subscribe("fleet/\(index)/config", qos: .atLeastOnce)
                subscribers.append(client)
            }
            try await waitParked(broker, 40)
            let sender = try await connectAccepted(port: port, "fleet-server")
            for index in 0..<40 {
                #expect(
                    try await sender.publish("fleet/\(index)/config", "cfg \(index)", qos: .atLeastOnce, packetIdentifier: UInt16(index + 1))
                        == .success
                )
            }
            for (index, client) in subscribers.enumerated() {
                let publish = try await client.receivePublish()
                #expect(String(buffer: publish.payload) == "cfg \(index)")
                try await client.acknowledge(publish)
            }
            for client in subscribers { await client.close() }
            await sender.close()
        }
    }
}

@Suite("Malloc tuning for parked connections")
struct MallocTuningTests {
    @Test("our tunables are added to what GLIBC_TUNABLES holds, and not when it sets the tcache already")
    func tunables() {
        #expect(MallocTuning.tunablesAdding(to: "") == "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0:glibc.malloc.trim_threshold=131072")
        #expect(
            MallocTuning.tunablesAdding(to: "glibc.malloc.arena_max=2")
                == "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0:glibc.malloc.trim_threshold=131072"
        )
        #expect(MallocTuning.tunablesAdding(to: "glibc.malloc.tcache_count=7") == nil)
    }

    @Test("databus broker runs itself again with the tunables, keeping its process id")
    func brokerProcessEnvironment() async throws {
        let broker = try await DatabusBrokerProcess.start()
        defer { Task { await broker.stop() } }
        // The process that listens is the one started (the tests stop brokers by this id).
        let environment = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(broker.pid)/environ"))
        // glibc cuts the variable where it parsed it (a NUL for each ':'), so the text is looked for as a whole.
        let text = String(decoding: environment.map { $0 == 0 ? UInt8(ascii: "\n") : $0 }, as: UTF8.self)
        #expect(text.contains("GLIBC_TUNABLES=glibc.malloc.tcache_count=0\nglibc.malloc.mxfast=0\nglibc.malloc.trim_threshold=131072"))
        let client = try await connectAccepted(port: broker.port, "after-reexec")
        #expect(try await client.roundTrip().isEmpty)
        await client.close()
    }
}

@Suite("A broker run by an ordinary user")
struct OrdinaryUserTests {
    static let canSwitchUser = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") && getpwuid(65_534) != nil

    // Every connection was refused when the broker ran as anyone but root: the channel set
    // SO_DEBUG (`.socketOption(.tcp_nodelay)`), which only root may, instead of TCP_NODELAY.
    @Test(
        "databus broker started as nobody accepts clients, whether its listeners park connections or not",
        .enabled(if: Self.canSwitchUser),
        arguments: [10, 0]
    )
    func brokerAsNobody(park: Int) async throws {
        let folder = try TemporaryDirectory(prefix: "databus-nobody")
        defer { folder.remove() }
        chmod(folder.path, 0o755)
        // A copy the user may run wherever the build folder is.
        let binary = folder.file("databus")
        try FileManager.default.copyItem(atPath: DatabusBrokerProcess.executable(), toPath: binary)
        let port = try await Mosquitto.freePort()
        let configuration = try folder.write("databus.conf", "listener \(port) 127.0.0.1\nallow_anonymous true\npark_idle_connections \(park)\n")
        chmod(configuration, 0o644)
        let process = try ChildProcess.spawn(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", binary, "broker", "-c", configuration],
            errorPath: folder.file("databus.log")
        )
        var accepted = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !accepted && ContinuousClock.now < deadline && process.isRunning {
            if let (client, connack) = try? await connect(port: port, "ordinary") {
                accepted = connack.reasonCode == .success
                if accepted { #expect(try await client.roundTrip().isEmpty) }
                await client.close()
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        await process.terminate()
        let log = (try? String(contentsOfFile: folder.file("databus.log"), encoding: .utf8)) ?? ""
        #expect(accepted, "no client accepted; the log ends: \(log.suffix(400))")
    }
}
