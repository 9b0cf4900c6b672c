import MQTTCore
import NIOCore

extension MQTTClient {
    /// The CONNECT for the next attempt: the configured session, will, limits and MQTT 5
    /// properties, with the credentials and authentication data fetched for this attempt.
    func connectPacket(username: String?, password: [UInt8]?, authenticationData: ByteBuffer?) -> ConnectPacket {
        let v5 = configuration.protocolVersion == .v5
        var properties: Properties = []
        if v5 {
            if let authentication = configuration.enhancedAuthentication {
                properties.append(.authenticationMethod(authentication.method))
                if let authenticationData { properties.append(.authenticationData(authenticationData)) }
            }
            let expiry = configuration.sessionExpiry.wholeSeconds(maximum: Int64(UInt32.max))
            if expiry > 0 { properties.append(.sessionExpiryInterval(UInt32(expiry))) }
            if configuration.receiveMaximum != UInt16.max { properties.append(.receiveMaximum(configuration.receiveMaximum)) }
            if let maximum = configuration.maximumPacketSize { properties.append(.maximumPacketSize(maximum)) }
            if configuration.topicAliasMaximum > 0 { properties.append(.topicAliasMaximum(configuration.topicAliasMaximum)) }
            for (name, value) in configuration.connectUserProperties { properties.append(.userProperty(name, value)) }
        }
        // MQTT 5 reconnects resume the session; 3.1.1 has no expiry, so its flag stays as configured.
        let cleanStart = firstConnectionOfRun || !v5 ? configuration.cleanStart : false
        var will = configuration.will
        if !v5 { will?.properties = [] }
        return ConnectPacket(
            protocolVersion: configuration.protocolVersion,
            clientIdentifier: clientIdentifier,
            cleanStart: cleanStart,
            keepAlive: UInt16(configuration.keepAlive.wholeSeconds(maximum: Int64(UInt16.max))),
            username: username,
            password: password.map { ByteBuffer(bytes: $0) },
            will: will,
            properties: properties
        )
    }

}
