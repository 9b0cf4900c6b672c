import NIOCore

@testable import MQTTCore

/// At least one packet of every kind, with the fields each protocol version can carry.
enum SamplePackets {
    static func all(for version: MQTTProtocolVersion) -> [MQTTPacket] {
        let v5 = version == .v5
        func props(_ properties: Properties) -> Properties { v5 ? properties : [] }
        let payload = ByteBuffer(string: #"{"plate":"AB123CD","confidence":0.97}"#)
        return [
            .connect(ConnectPacket(protocolVersion: version, clientIdentifier: "camera-17")),
            .connect(
                ConnectPacket(
                    protocolVersion: version,
                    clientIdentifier: "",
                    cleanStart: false,
                    keepAlive: 0,
                    username: "gateway",
                    password: ByteBuffer(bytes: [0, 1, 2, 0xFF]),
                    will: .init(
                        topic: "lprserver/cameras/17/status",
                        payload: ByteBuffer(string: "offline"),
                        qos: .exactlyOnce,
                        retain: true,
                        properties: props([.willDelayInterval(30), .contentType("text/plain"), .userProperty("k", "v")])
                    ),
                    properties: props([.sessionExpiryInterval(3600), .receiveMaximum(32), .maximumPacketSize(1 << 20)])
                )
            ),
            .connack(ConnAckPacket(sessionPresent: true)),
            .connack(ConnAckPacket(reasonCode: .notAuthorized)),
            .connack(
                ConnAckPacket(
                    reasonCode: .success,
                    properties: props([.assignedClientIdentifier("auto-1"), .topicAliasMaximum(10), .maximumQoS(1)])
                )
            ),
            .publish(PublishPacket(topicName: "a", payload: ByteBuffer())),
            .publish(PublishPacket(topicName: "lprserver/cameras/17/detection", payload: payload, qos: .atLeastOnce, packetIdentifier: 1)),
            .publish(
                PublishPacket(
                    topicName: "lprserver/cameras/17/detection",
                    payload: payload,
                    qos: .exactlyOnce,
                    retain: true,
                    dup: true,
                    packetIdentifier: 65_535,
                    properties: props([
                        .payloadFormatIndicator(1), .messageExpiryInterval(60), .responseTopic("reply/17"),
                        .correlationData(ByteBuffer(bytes: [9, 9])), .subscriptionIdentifier(200), .subscriptionIdentifier(1),
                        .userProperty("a", "b"), .userProperty("a", "c"),
                    ])
                )
            ),
            .puback(PubAckPacket(packetIdentifier: 7)),
            .pubrec(PubRecPacket(packetIdentifier: 8)),
            .pubrel(PubRelPacket(packetIdentifier: 9)),
            .pubcomp(PubCompPacket(packetIdentifier: 10)),
            .subscribe(
                SubscribePacket(
                    packetIdentifier: 11,
                    subscriptions: [
                        Subscription(topicFilter: "lprserver/cameras/+/detection", options: .init(qos: .atLeastOnce)),
                        Subscription(topicFilter: "#", options: .init(qos: .exactlyOnce)),
                    ],
                    properties: props([.subscriptionIdentifier(5)])
                )
            ),
            .suback(SubAckPacket(packetIdentifier: 11, reasonCodes: [.grantedQoS1, .grantedQoS0, .unspecifiedError])),
            .unsubscribe(UnsubscribePacket(packetIdentifier: 12, topicFilters: ["a/b", "c/#"])),
            .unsuback(UnsubAckPacket(packetIdentifier: 12, reasonCodes: v5 ? [.success, .noSubscriptionExisted] : [])),
            .pingreq,
            .pingresp,
            .disconnect(DisconnectPacket()),
        ] + (v5 ? v5Only : [])
    }

    /// Packets and fields that exist in MQTT 5.0 only.
    static let v5Only: [MQTTPacket] = [
        .publish(PublishPacket(topicName: "", payload: ByteBuffer(string: "x"), properties: [.topicAlias(3)])),
        .puback(PubAckPacket(packetIdentifier: 7, reasonCode: .noMatchingSubscribers)),
        .pubrec(PubRecPacket(packetIdentifier: 8, reasonCode: .quotaExceeded, properties: [.reasonString("full")])),
        .pubrel(PubRelPacket(packetIdentifier: 9, reasonCode: .packetIdentifierNotFound)),
        .pubcomp(PubCompPacket(packetIdentifier: 10, properties: [.userProperty("x", "y")])),
        .subscribe(
            SubscribePacket(
                packetIdentifier: 13,
                subscriptions: [
                    Subscription(
                        topicFilter: "$share/ingest/lprserver/#",
                        options: .init(qos: .exactlyOnce, noLocal: true, retainAsPublished: true, retainHandling: .doNotSend)
                    )
                ]
            )
        ),
        .suback(SubAckPacket(packetIdentifier: 13, reasonCodes: [.grantedQoS2, .notAuthorized], properties: [.reasonString("acl")])),
        .disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)),
        .disconnect(DisconnectPacket(reasonCode: .serverMoved, properties: [.serverReference("other:1883"), .sessionExpiryInterval(0)])),
        .auth(AuthPacket()),
        .auth(
            AuthPacket(
                reasonCode: .continueAuthentication,
                properties: [.authenticationMethod("SCRAM-SHA-1"), .authenticationData(ByteBuffer(bytes: [1, 2, 3]))]
            )
        ),
    ]
}

extension MQTTPacket {
    /// The packet encoded for `version`.
    func encoded(_ version: MQTTProtocolVersion) throws -> ByteBuffer {
        var buffer = ByteBuffer()
        try write(to: &buffer, version: version)
        return buffer
    }
}
