// The seed corpus: valid packets of every kind in both protocol versions, encoded by MQTTCore
// itself, each file prefixed with the mode byte (see DecoderFuzzer.swift).
//
// `DecoderFuzzer --write-seeds DIR` writes them; Fuzz/seeds/ holds a committed copy.

import MQTTCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func bytes(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }

/// Packets a client sends and a server reads, for `version`.
private func clientPackets(_ version: MQTTProtocolVersion) -> [(String, MQTTPacket)] {
    let v5 = version == .v5
    var packets: [(String, MQTTPacket)] = [
        (
            "connect-full",
            .connect(
                ConnectPacket(
                    protocolVersion: version,
                    clientIdentifier: "sensor-17",
                    cleanStart: false,
                    keepAlive: 30,
                    username: "alice",
                    password: bytes("s3cret"),
                    will: ConnectPacket.Will(
                        topic: "devices/sensor-17/status",
                        payload: bytes("offline"),
                        qos: .atLeastOnce,
                        retain: true,
                        properties: v5
                            ? [
                                .willDelayInterval(10), .payloadFormatIndicator(1), .messageExpiryInterval(3600),
                                .contentType("text/plain"), .responseTopic("devices/sensor-17/reply"),
                                .correlationData(bytes("c0rr")), .userProperty("origin", "will"),
                            ] : []
                    ),
                    properties: v5
                        ? [
                            .sessionExpiryInterval(300), .receiveMaximum(20), .maximumPacketSize(65_536),
                            .topicAliasMaximum(10), .requestResponseInformation(1), .requestProblemInformation(0),
                            .userProperty("site", "lab"), .authenticationMethod("SCRAM-SHA-1"),
                            .authenticationData(bytes("client-first")),
                        ] : []
                )
            )
        ),
        ("connect-minimal", .connect(ConnectPacket(protocolVersion: version, clientIdentifier: "", keepAlive: 0))),
        (
            "connect-will-qos2",
            .connect(
                ConnectPacket(
                    protocolVersion: version,
                    clientIdentifier: "c",
                    username: "u",
                    will: ConnectPacket.Will(topic: "w", payload: ByteBuffer(), qos: .exactlyOnce)
                )
            )
        ),
        ("publish-qos0", .publish(PublishPacket(topicName: "a/b", payload: bytes("hello")))),
        (
            "publish-qos1",
            .publish(
                PublishPacket(
                    topicName: "sensors/temp",
                    payload: bytes("21.5"),
                    qos: .atLeastOnce,
                    retain: true,
                    packetIdentifier: 1,
                    properties: v5
                        ? [
                            .payloadFormatIndicator(1), .messageExpiryInterval(60), .topicAlias(3),
                            .responseTopic("reply/here"), .correlationData(bytes("id-1")),
                            .userProperty("k", "v"), .userProperty("k", "w"), .subscriptionIdentifier(7),
                            .contentType("text/plain"),
                        ] : []
                )
            )
        ),
        (
            "publish-qos2-dup",
            .publish(
                PublishPacket(
                    topicName: "x/ÿ/€",
                    payload: ByteBuffer(bytes: [0, 1, 2, 0xFF]),
                    qos: .exactlyOnce,
                    dup: true,
                    packetIdentifier: 0xFFFF,
                    properties: v5 ? [.subscriptionIdentifier(268_435_455), .subscriptionIdentifier(128)] : []
                )
            )
        ),
        ("puback", .puback(PubAckPacket(packetIdentifier: 1))),
        ("pubrec", .pubrec(PubRecPacket(packetIdentifier: 2))),
        ("pubrel", .pubrel(PubRelPacket(packetIdentifier: 3))),
        ("pubcomp", .pubcomp(PubCompPacket(packetIdentifier: 4))),
        (
            "subscribe",
            .subscribe(
                SubscribePacket(
                    packetIdentifier: 10,
                    subscriptions: [
                        Subscription(topicFilter: "a/+/c", options: SubscriptionOptions(qos: .atLeastOnce)),
                        Subscription(
                            topicFilter: "$share/group/b/#",
                            options: v5
                                ? SubscriptionOptions(
                                    qos: .exactlyOnce,
                                    noLocal: true,
                                    retainAsPublished: true,
                                    retainHandling: .doNotSend
                                ) : SubscriptionOptions(qos: .exactlyOnce)
                        ),
                        Subscription(topicFilter: "#"),
                    ],
                    properties: v5 ? [.subscriptionIdentifier(42), .userProperty("a", "b")] : []
                )
            )
        ),
        (
            "unsubscribe",
            .unsubscribe(
                UnsubscribePacket(
                    packetIdentifier: 11,
                    topicFilters: ["a/+/c", "$share/group/b/#"],
                    properties: v5 ? [.userProperty("why", "done")] : []
                )
            )
        ),
        ("pingreq", .pingreq),
        ("disconnect", .disconnect(DisconnectPacket())),
    ]
    if v5 {
        packets += [
            (
                "puback-reason",
                .puback(PubAckPacket(packetIdentifier: 5, reasonCode: .noMatchingSubscribers, properties: [.reasonString("nobody"), .userProperty("a", "b")]))
            ),
            ("pubrec-reason", .pubrec(PubRecPacket(packetIdentifier: 6, reasonCode: .quotaExceeded))),
            ("pubrel-reason", .pubrel(PubRelPacket(packetIdentifier: 7, reasonCode: .packetIdentifierNotFound, properties: [.reasonString("gone")]))),
            ("pubcomp-reason", .pubcomp(PubCompPacket(packetIdentifier: 8, reasonCode: .packetIdentifierNotFound))),
            (
                "disconnect-reason",
                .disconnect(
                    DisconnectPacket(
                        reasonCode: .disconnectWithWillMessage,
                        properties: [.sessionExpiryInterval(0), .reasonString("bye"), .userProperty("a", "b")]
                    )
                )
            ),
            (
                "auth",
                .auth(
                    AuthPacket(
                        reasonCode: .continueAuthentication,
                        properties: [.authenticationMethod("SCRAM-SHA-1"), .authenticationData(bytes("client-final")), .reasonString("more")]
                    )
                )
            ),
            ("auth-empty", .auth(AuthPacket())),
        ]
    }
    return packets
}

/// Packets a server sends and a client reads, for `version`.
private func serverPackets(_ version: MQTTProtocolVersion) -> [(String, MQTTPacket)] {
    let v5 = version == .v5
    var packets: [(String, MQTTPacket)] = [
        (
            "connack",
            .connack(
                ConnAckPacket(
                    sessionPresent: true,
                    reasonCode: .success,
                    properties: v5
                        ? [
                            .sessionExpiryInterval(300), .receiveMaximum(100), .maximumQoS(1), .retainAvailable(1),
                            .maximumPacketSize(1_048_576), .assignedClientIdentifier("auto-1"),
                            .topicAliasMaximum(16), .reasonString("welcome"), .userProperty("x", "y"),
                            .wildcardSubscriptionAvailable(1), .subscriptionIdentifierAvailable(1),
                            .sharedSubscriptionAvailable(1), .serverKeepAlive(45), .responseInformation("resp/"),
                            .serverReference("other:1883"), .authenticationMethod("SCRAM-SHA-1"),
                            .authenticationData(bytes("server-final")),
                        ] : []
                )
            )
        ),
        ("connack-refused", .connack(ConnAckPacket(reasonCode: .badUserNameOrPassword))),
        (
            "suback",
            .suback(
                SubAckPacket(
                    packetIdentifier: 10,
                    reasonCodes: [.grantedQoS1, .grantedQoS2, .success, .unspecifiedError],
                    properties: v5 ? [.reasonString("partly"), .userProperty("a", "b")] : []
                )
            )
        ),
        (
            "unsuback",
            .unsuback(
                UnsubAckPacket(
                    packetIdentifier: 11,
                    reasonCodes: v5 ? [.success, .noSubscriptionExisted] : [],
                    properties: v5 ? [.reasonString("ok")] : []
                )
            )
        ),
        ("pingresp", .pingresp),
        ("publish-qos1", .publish(PublishPacket(topicName: "t", payload: bytes("p"), qos: .atLeastOnce, packetIdentifier: 9))),
        ("puback", .puback(PubAckPacket(packetIdentifier: 1))),
        ("pubrec", .pubrec(PubRecPacket(packetIdentifier: 2))),
        ("pubrel", .pubrel(PubRelPacket(packetIdentifier: 3))),
        ("pubcomp", .pubcomp(PubCompPacket(packetIdentifier: 4))),
    ]
    if v5 {
        packets += [
            ("connack-v5-refused", .connack(ConnAckPacket(reasonCode: .banned, properties: [.reasonString("banned")]))),
            (
                "suback-v5-failures",
                .suback(SubAckPacket(packetIdentifier: 12, reasonCodes: [.notAuthorized, .sharedSubscriptionsNotSupported, .quotaExceeded]))
            ),
            (
                "publish-alias-only",
                .publish(PublishPacket(topicName: "", payload: bytes("by alias"), properties: [.topicAlias(3)]))
            ),
            ("disconnect-server", .disconnect(DisconnectPacket(reasonCode: .serverMoved, properties: [.serverReference("other:1883")]))),
            ("auth-server", .auth(AuthPacket(reasonCode: .success, properties: [.authenticationMethod("SCRAM-SHA-1")]))),
        ]
    }
    return packets
}

private func encoded(_ packets: [MQTTPacket], version: MQTTProtocolVersion) -> [UInt8] {
    var buffer = ByteBuffer()
    for packet in packets {
        let packetVersion: MQTTProtocolVersion
        if case .connect(let connect) = packet { packetVersion = connect.protocolVersion } else { packetVersion = version }
        do {
            try packet.write(to: &buffer, version: packetVersion)
        } catch {
            fatalError("seed packet does not encode: \(error): \(packet)")
        }
    }
    return Array(buffer.readableBytesView)
}

struct Seed {
    var name: String
    var modeByte: UInt8
    var packets: [MQTTPacket]
    var version: MQTTProtocolVersion

    var data: [UInt8] { [modeByte] + encoded(packets, version: version) }
}

/// All seeds.
func seeds() -> [Seed] {
    var result: [Seed] = []
    for version in [MQTTProtocolVersion.v3_1_1, .v5] {
        let tag = version == .v5 ? "v5" : "v311"
        let client = clientPackets(version)
        let server = serverPackets(version)
        func add(_ name: String, _ modeByte: UInt8, _ packets: [MQTTPacket]) {
            result.append(Seed(name: name, modeByte: modeByte, packets: packets, version: version))
        }
        // A server's stream: CONNECT, then each other packet a client sends.
        let connect = client[0].1
        for (name, packet) in client {
            add("server-\(tag)-\(name)", Mode.byte(side: .server), packet.type == .connect ? [packet] : [connect, packet])
        }
        // A whole session in one stream, fed byte by byte and with a small maximum packet size.
        let session = client.map(\.1)
        add("server-\(tag)-session", Mode.byte(side: .server), session)
        add("server-\(tag)-session-bytewise", Mode.byte(side: .server, split: 0), session)
        add("server-\(tag)-session-max4096", Mode.byte(side: .server, maximumPacketSizeIndex: 6, split: 3), session)
        // A client's stream: each packet a server sends.
        let side: Side = version == .v5 ? .client5 : .client311
        for (name, packet) in server {
            add("client-\(tag)-\(name)", Mode.byte(side: side), [packet])
        }
        let serverSession = server.map(\.1)
        add("client-\(tag)-session", Mode.byte(side: side), serverSession)
        add("client-\(tag)-session-bytewise", Mode.byte(side: side, split: 0), serverSession)
        // Client-sent packets in a client-side stream too (the decoder does not check direction).
        for (name, packet) in client where packet.type != .connect {
            add("client-\(tag)-from-client-\(name)", Mode.byte(side: side, split: 5), [packet])
        }
    }
    return result
}

private func printError(_ message: String) {
    var message = message
    message.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Writes every seed to `directory` (which must exist), checking first that each decodes
/// completely, to the packets it was made of, in its own mode.
func writeSeeds(to directory: String) -> CInt {
    let all = seeds()
    for seed in all {
        let data = seed.data
        let mode = Mode(byte: seed.modeByte)
        let outcome = decodeWhole(ByteBuffer(bytes: data.dropFirst()), mode: mode)
        guard outcome.error == nil, outcome.packets == seed.packets else {
            printError("seed \(seed.name) does not decode to its packets: \(outcome)\n")
            return 1
        }
        _ = fuzzTestOneInput(data, data.count)
        let path = directory + "/" + seed.name
        guard let file = fopen(path, "wb") else {
            printError("cannot open \(path)\n")
            return 1
        }
        let written = data.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
        if written != data.count {
            printError("cannot write \(path)\n")
            return 1
        }
    }
    print("wrote \(all.count) seeds to \(directory)")
    return 0
}
