import MQTTCore
import NIOCore
import Testing

/// mosquitto's bridges mark their CONNECT with bit 0x80 of the protocol level (`try_private`).
@Suite("CONNECT bridge bit")
struct ConnectBridgeBitTests {
    @Test("a 3.1.1 bridge CONNECT carries level 0x84 and decodes as a bridge of version 3.1.1")
    func bridge311() throws {
        var connect = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "edge.host", cleanStart: false, keepAlive: 60)
        connect.isBridge = true
        let bytes = try WireBytes.encode(.connect(connect), version: .v3_1_1)
        #expect(bytes[8] == 0x84)
        let (decoded, unread) = try WireBytes.decode(bytes, version: nil)
        #expect(unread == 0)
        guard case .connect(let back)? = decoded else {
            Issue.record("decoded \(decoded)")
            return
        }
        #expect(back.isBridge)
        #expect(back.protocolVersion == .v3_1_1)
        #expect(back == connect)
    }

    @Test("a 3.1 bridge CONNECT (MQIsdp) carries level 0x83")
    func bridge31() throws {
        var connect = ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "edge", keepAlive: 60)
        connect.isBridge = true
        let bytes = try WireBytes.encode(.connect(connect), version: .v3_1)
        #expect(bytes[10] == 0x83)
        let (decoded, _) = try WireBytes.decode(bytes, version: nil)
        guard case .connect(let back)? = decoded else {
            Issue.record("decoded \(decoded)")
            return
        }
        #expect(back.isBridge && back.protocolVersion == .v3_1)
    }

    @Test("5.0 has no bridge bit: level 5 is written, and level 0x85 is refused as mosquitto refuses it")
    func noBitOn5() throws {
        var connect = ConnectPacket(protocolVersion: .v5, clientIdentifier: "edge")
        connect.isBridge = true
        let bytes = try WireBytes.encode(.connect(connect), version: .v5)
        #expect(bytes[8] == 0x05)
        var marked = bytes
        marked[8] = 0x85
        #expect(throws: MQTTDecodingError.self) { _ = try WireBytes.decode(marked, version: nil) }
    }

    @Test("an ordinary 3.1.1 CONNECT is not a bridge")
    func ordinary() throws {
        let bytes = try WireBytes.encode(.connect(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "camera")), version: .v3_1_1)
        #expect(bytes[8] == 0x04)
        let (decoded, _) = try WireBytes.decode(bytes, version: nil)
        guard case .connect(let back)? = decoded else { return }
        #expect(!back.isBridge)
    }
}
