import NIOCore

extension MQTTClient {
    /// MQTT 5 enhanced authentication: an authentication method the broker knows and the
    /// client's side of its challenge/response exchange, carried by AUTH packets before CONNACK.
    ///
    /// ```swift
    /// configuration.enhancedAuthentication = MQTTClient.EnhancedAuthentication(
    ///     method: "SCRAM-SHA-256",
    ///     initialData: { ByteBuffer(string: scram.clientFirstMessage()) },
    ///     respond: { challenge in ByteBuffer(string: try scram.clientFinalMessage(challenge)) }
    /// )
    /// ```
    ///
    /// Before every connection attempt the client calls ``initialData`` and sends CONNECT with
    /// the method and that data. Each AUTH from the broker with reason 0x18 (continue
    /// authentication) goes to ``respond``, whose answer the client sends back in its own AUTH;
    /// the exchange ends with CONNACK. A broker that does not know the method answers CONNACK
    /// 0x8C (bad authentication method), which ``MQTTClient/connect()`` throws as
    /// ``MQTTClientError/Code-swift.struct/connectionRefused``. The authentication data of a
    /// successful CONNACK is in the `ConnAckPacket` that `connect()` returns.
    /// Re-authentication on a live connection is not supported. MQTT 3.1.1 has no AUTH packet:
    /// the setting is ignored there.
    public struct EnhancedAuthentication: Sendable {
        /// Returns the authentication data for CONNECT, or `nil` for none.
        public typealias InitialData = @Sendable () async throws -> ByteBuffer?
        /// Given the broker's authentication data from an AUTH packet (`nil` when it sent none),
        /// returns the data for the client's answering AUTH, or `nil` for none. Throwing ends the attempt.
        public typealias Responder = @Sendable (_ challenge: ByteBuffer?) async throws -> ByteBuffer?

        /// The authentication method, as the broker names it (for example `SCRAM-SHA-256`).
        public var method: String
        /// Called before every connection attempt for the data sent in CONNECT.
        public var initialData: InitialData
        /// Called for every AUTH (continue authentication) from the broker.
        public var respond: Responder

        /// - Parameters:
        ///   - method: the authentication method.
        ///   - initialData: the data for CONNECT, fetched before every attempt; none by default.
        ///   - respond: answers each challenge of the broker.
        public init(
            method: String,
            initialData: @escaping InitialData = { nil },
            respond: @escaping Responder
        ) {
            self.method = method
            self.initialData = initialData
            self.respond = respond
        }
    }
}
