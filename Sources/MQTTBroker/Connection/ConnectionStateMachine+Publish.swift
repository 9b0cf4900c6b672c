import MQTTCore
import NIOCore

extension ConnectionStateMachine {
    /// How the broker answers a QoS 1/2 PUBLISH once it knows where the message went.
    struct Acknowledgement: Equatable {
        enum Kind: Equatable {
            /// QoS 1.
            case puback
            /// QoS 2 (PUBREL and PUBCOMP follow).
            case pubrec
        }

        let kind: Kind
        let packetIdentifier: UInt16
        let version: MQTTProtocolVersion

        func packet(_ reason: ReasonCode) -> MQTTPacket {
            switch kind {
            case .puback: .puback(PubAckPacket(packetIdentifier: packetIdentifier, reasonCode: reason))
            case .pubrec: .pubrec(PubRecPacket(packetIdentifier: packetIdentifier, reasonCode: reason))
            }
        }

        /// The answer once the message is routed. 5.0 publishers learn when a copy could not be
        /// queued for a persistent session (0x97 quota exceeded) and when nobody subscribed
        /// (0x10); 3.1.1 has only success. A QoS 2 failure ends the flow, so the incoming
        /// identifier is released (`releasesIdentifier`).
        func answer(for outcome: RouteOutcome) -> (packet: MQTTPacket, releasesIdentifier: Bool) {
            var reason = ReasonCode.success
            if version == .v5 {
                if outcome.notQueued > 0 {
                    reason = .quotaExceeded
                } else if outcome.deliveries == 0 {
                    reason = .noMatchingSubscribers
                }
            }
            return (packet(reason), kind == .pubrec && reason.isFailure)
        }

        enum StoreFailureAction: Equatable {
            /// 5.0: refuse the message with 0x80 (the identifier is released).
            case answer(MQTTPacket)
            /// 3.1.1 has no failure acknowledgement: close, and the client re-sends after reconnecting.
            case close(ReasonCode)
        }

        /// The store could not keep the message: it is not acknowledged.
        var storeFailed: StoreFailureAction {
            version == .v5 ? .answer(packet(.unspecifiedError)) : .close(.unspecifiedError)
        }
    }

    /// A PUBLISH to route.
    struct InboundMessage {
        var message: ApplicationMessage
        /// When it arrived: it is routed as of then (an expiry interval of 0 still reaches
        /// connected subscribers).
        var receivedAt: NIODeadline
        /// Nil for QoS 0.
        var acknowledgement: Acknowledgement?
        /// Store the copies for persistent sessions before delivering and acknowledging.
        var durable: Bool
        /// Changes stored with the message (a persistent session's incoming QoS 2 identifier).
        var storeOperations: [StoreOperation] = []
        /// Something about the client to log as a warning (once per connection).
        var warning: String? = nil
    }

    enum PublishAction {
        /// Route the message, then acknowledge it.
        case route(InboundMessage)
        /// Do not route it; send `answer` (nil for QoS 0), count `drop` and log `why`.
        case answer(MQTTPacket?, drop: DropReason?, why: String?)
    }

    /// The rules a PUBLISH from the client goes through, in order: topic alias, retain
    /// available, the ACL, QoS 2 duplicates and receive maximum, then where it goes.
    mutating func publishReceived(_ publish: PublishPacket, now: NIODeadline, session: some SessionRules) -> ReadAction {
        guard let connected else { return .ignore }
        var publish = publish
        let version = connected.version
        if version == .v5, let alias = publish.properties.topicAlias {
            guard alias <= limits.maxTopicAlias else {
                return close(.topicAliasInvalid, "topic alias \(alias) above our maximum \(limits.maxTopicAlias)")
            }
            if publish.topicName.isEmpty {
                guard let topic = connected.topicAliases[alias] else { return protocolError("topic alias \(alias) was never set") }
                publish.topicName = topic
            } else {
                self.connected?.topicAliases[alias] = publish.topicName
            }
        }
        if publish.retain && !limits.retainAvailable {
            return close(.retainNotSupported, "retained PUBLISH while retain_available is false")
        }
        let acknowledgement = publish.packetIdentifier.map {
            Acknowledgement(kind: publish.qos == .exactlyOnce ? .pubrec : .puback, packetIdentifier: $0, version: version)
        }
        if let access = session.access, !access.allows(.write, topic: publish.topicName) {
            // 5.0 clients learn 0x87; 3.1.1 has no way to say so and, as in mosquitto, the
            // message is acknowledged and dropped (QoS 2 goes on to PUBREL, so its identifier is held).
            if version != .v5, publish.qos == .exactlyOnce, let identifier = publish.packetIdentifier {
                _ = session.beginIncoming(identifier)
            }
            return .publish(
                .answer(
                    acknowledgement?.packet(version == .v5 ? .notAuthorized : .success),
                    drop: .notAuthorized,
                    why: "the ACL does not allow publishing here; message dropped"
                )
            )
        }
        var overReceiveMaximum = false
        if publish.qos == .exactlyOnce, let identifier = publish.packetIdentifier {
            guard session.beginIncoming(identifier) else {
                // A re-sent QoS 2 PUBLISH before PUBREL: acknowledge again, deliver nothing.
                return .send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
            }
            // A client over our receive maximum is taken anyway and warned about once, as
            // mosquitto 2.0 does: clients that do it (paho-mqtt re-sending a backlog after a
            // reconnect, small devices) would otherwise be disconnected, reconnect and do it
            // again without end. The 16-bit identifiers still bound what is held.
            if session.incomingAwaitingRelease > limits.receiveMaximum, !receiveMaximumWarned {
                receiveMaximumWarned = true
                overReceiveMaximum = true
            }
        }
        let isSys = publish.topicName.hasPrefix("$SYS/") || publish.topicName == "$SYS"
        let tooLarge = limits.messageSizeLimit > 0 && publish.payload.readableBytes > limits.messageSizeLimit
        if tooLarge {
            // mosquitto drops it and acknowledges; 5.0 clients learn 0x97 (quota exceeded).
            if publish.qos == .exactlyOnce, let identifier = publish.packetIdentifier { _ = session.releaseIncoming(identifier) }
            return .publish(.answer(acknowledgement?.packet(.quotaExceeded), drop: .tooLarge, why: "dropping a message over message_size_limit"))
        }
        if isSys {
            return .publish(.answer(acknowledgement?.packet(.success), drop: .forbiddenTopic, why: nil))
        }
        let message = ApplicationMessage(publish: publish, publisherID: connected.clientID, now: now)
        var inbound = InboundMessage(
            message: message,
            receivedAt: now,
            acknowledgement: acknowledgement,
            durable: limits.persistence && publish.qos != .atMostOnce
        )
        if inbound.durable, publish.qos == .exactlyOnce, connected.sessionExpiry != 0, let identifier = publish.packetIdentifier {
            inbound.storeOperations.append(.putIncoming(clientID: connected.clientID, packetIdentifier: identifier))
        }
        if overReceiveMaximum {
            inbound.warning =
                "the client has more QoS 2 messages in flight than our receive maximum (\(limits.receiveMaximum)); taking them anyway, but the client should respect it"
        }
        return .publish(.route(inbound))
    }

    /// PUBREL from the client: its QoS 2 message is released; PUBCOMP answers, once a
    /// persistent session's identifier is forgotten on disk too (or a restart would refuse
    /// the identifier's next use).
    mutating func releaseReceived(_ release: PubRelPacket, session: some SessionRules) -> ReadAction {
        guard let connected else { return .ignore }
        let stored = limits.persistence && connected.sessionExpiry != 0
        let (pubcomp, operations) = Self.release(release, session: session, storedFor: stored ? connected.clientID : nil)
        return operations.isEmpty ? .send(pubcomp) : .sendAfterStoring(pubcomp, operations)
    }

    /// PUBREL: the QoS 2 message is released; the PUBCOMP to send, and when the message was
    /// stored for `clientID`, the store change to make first.
    static func release(
        _ release: PubRelPacket,
        session: some SessionRules,
        storedFor clientID: String?
    ) -> (pubcomp: MQTTPacket, operations: [StoreOperation]) {
        let identifier = release.packetIdentifier
        let known = session.releaseIncoming(identifier)
        let pubcomp = MQTTPacket.pubcomp(PubCompPacket(packetIdentifier: identifier, reasonCode: known ? .success : .packetIdentifierNotFound))
        guard known, let clientID else { return (pubcomp, []) }
        return (pubcomp, [.deleteIncoming(clientID: clientID, packetIdentifier: identifier)])
    }
}
