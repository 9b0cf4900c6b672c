import MQTTCore

extension ConnectionStateMachine {
    /// What CONNECT asked for, carried through authentication.
    struct Admission {
        let connect: ConnectPacket
        let clientID: String
        /// The broker made the identifier up (the client sent an empty one).
        let assigned: Bool
        /// The keep alive the broker imposes instead of the client's (5.0 server keep alive).
        let serverKeepAlive: UInt16?
    }

    enum ConnectAction {
        /// Answer with this CONNACK (in the client's protocol version) and close.
        case refuse(ConnAckPacket, MQTTProtocolVersion, why: String)
        /// Ask the authenticator who the client is.
        case authenticate(Admission)
    }

    /// The rules a CONNECT must pass before anyone checks credentials.
    mutating func connectReceived(
        _ connect: ConnectPacket,
        configuration: BrokerConfiguration,
        assignIdentifier: () -> String
    ) -> ConnectAction {
        let version = connect.protocolVersion
        func refuse(_ reason: ReasonCode, _ why: String) -> ConnectAction {
            phase = .closing
            return .refuse(ConnAckPacket(reasonCode: reason), version, why: why)
        }
        var clientID = connect.clientIdentifier
        var assigned = false
        if clientID.isEmpty {
            // MQTT 3.1 has no empty client identifiers: mosquitto refuses them with "identifier rejected".
            guard configuration.allowZeroLengthClientID, version != .v3_1, version == .v5 || connect.cleanStart else {
                return refuse(.clientIdentifierNotValid, "empty client identifier")
            }
            clientID = assignIdentifier()
            assigned = true
        }
        // max_keepalive as mosquitto 2.0.11 applies it: a 5.0 client asking for more (or for
        // none) is told the maximum as server keep alive; 3.1.1 cannot be told, so a keep alive
        // above the maximum is refused (as mosquitto documents) and 0 (no keep alive) is accepted.
        var serverKeepAlive: UInt16?
        let maximum = configuration.maxKeepalive
        if connect.keepAlive > maximum || (connect.keepAlive == 0 && maximum < 65_535) {
            switch version {
            case .v5:
                serverKeepAlive = maximum
            case .v3_1, .v3_1_1:
                if connect.keepAlive > maximum {
                    return refuse(.clientIdentifierNotValid, "keep alive \(connect.keepAlive) s is not allowed (max_keepalive \(maximum))")
                }
            }
        }
        if version == .v5, let method = connect.properties.authenticationMethod {
            return refuse(.badAuthenticationMethod, "authentication method \(method) is not supported")
        }
        if connect.will?.retain == true && !configuration.retainAvailable {
            return refuse(.retainNotSupported, "retained will while retain_available is false")
        }
        let admission = Admission(connect: connect, clientID: clientID, assigned: assigned, serverKeepAlive: serverKeepAlive)
        self.admission = admission
        phase = .authenticating
        return .authenticate(admission)
    }

    /// The session the admitted client gets.
    struct SessionRequest: Equatable {
        let clientID: String
        let cleanStart: Bool
        /// Seconds the session outlives the connection (`UInt32.max`: for ever).
        let sessionExpiry: UInt32
        let username: String?
        /// How the client got in ("password_file", "anonymous", "jwt", "certificate", ...).
        let method: String
    }

    enum AdmissionAction {
        /// Answer with this CONNACK (in the client's protocol version) and close.
        case refuse(ConnAckPacket, MQTTProtocolVersion, why: String)
        /// Open (or resume) the client's session, then call ``sessionOpened(present:configuration:)``.
        case openSession(SessionRequest)
    }

    /// The authenticator decided. Nil when the connection closed meanwhile.
    mutating func authenticated(_ result: AuthenticationResult, configuration: BrokerConfiguration) -> AdmissionAction? {
        guard phase == .authenticating, let admission else { return nil }
        let connect = admission.connect
        switch result {
        case .refused(let reason, let why):
            phase = .closing
            self.admission = nil
            pending = []
            return .refuse(ConnAckPacket(reasonCode: reason), connect.protocolVersion, why: why)
        case .accepted(let username, let method):
            let sessionExpiry: UInt32
            switch connect.protocolVersion {
            case .v5:
                sessionExpiry = connect.properties.sessionExpiryInterval ?? 0
            case .v3_1, .v3_1_1:
                if connect.cleanStart {
                    sessionExpiry = 0
                } else if let expiration = configuration.persistentClientExpiration {
                    sessionExpiry = UInt32(clamping: expiration.components.seconds)
                } else {
                    sessionExpiry = UInt32.max
                }
            }
            return .openSession(
                SessionRequest(
                    clientID: admission.clientID,
                    cleanStart: connect.cleanStart,
                    sessionExpiry: sessionExpiry,
                    username: username,
                    method: method
                )
            )
        }
    }

    /// The session is open: the client is connected. Returns the CONNACK; the packets that
    /// waited for it follow through ``takePending()``.
    mutating func sessionOpened(present: Bool, sessionExpiry: UInt32, configuration: BrokerConfiguration) -> ConnAckPacket {
        guard let admission else { preconditionFailure("sessionOpened without an admission") }
        self.admission = nil
        let connect = admission.connect
        var properties = Properties()
        if connect.protocolVersion == .v5 {
            if limits.receiveMaximum < 65_535 { properties.append(.receiveMaximum(UInt16(limits.receiveMaximum))) }
            if !configuration.retainAvailable { properties.append(.retainAvailable(0)) }
            if configuration.maxPacketSize > 0 { properties.append(.maximumPacketSize(UInt32(configuration.maxPacketSize))) }
            if configuration.maxTopicAlias > 0 { properties.append(.topicAliasMaximum(configuration.maxTopicAlias)) }
            if let serverKeepAlive = admission.serverKeepAlive { properties.append(.serverKeepAlive(serverKeepAlive)) }
            if admission.assigned { properties.append(.assignedClientIdentifier(admission.clientID)) }
        }
        connected = Connected(
            clientID: admission.clientID,
            version: connect.protocolVersion,
            will: connect.will,
            sessionExpiry: sessionExpiry,
            isBridge: connect.isBridge
        )
        keepAlive = admission.serverKeepAlive ?? connect.keepAlive
        phase = .connected
        return ConnAckPacket(sessionPresent: present, reasonCode: .success, properties: properties)
    }

    /// The packets the client sent before it was admitted, to handle now in order.
    mutating func takePending() -> [MQTTPacket] {
        defer { pending = [] }
        return pending
    }
}
