import MQTTBroker
import MQTTCore
import Testing

/// mosquitto's `connection` blocks as ``MosquittoConfigParser`` reads them: every key with
/// mosquitto's meaning and defaults, and errors naming the file, the line and the key.
@Suite("Bridge configuration")
struct BridgeConfigurationTests {
    private func parseError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigurationError? {
        do {
            let configuration = try MosquittoConfigParser.parse(text, file: "bridge.conf")
            Issue.record("parsed without error: \(configuration.bridges)", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    @Test("a minimal bridge takes mosquitto's defaults")
    func defaults() throws {
        let configuration = try MosquittoConfigParser.parse(
            """
            listener 1883
            connection central
            address central.example.com
            topic lpr/#
            """
        )
        let bridge = try #require(configuration.bridges.first)
        #expect(bridge.name == "central")
        #expect(bridge.addresses == [.init(host: "central.example.com", port: 1883)])
        #expect(bridge.topics == [.init(pattern: "lpr/#", direction: .out, qos: .atMostOnce)])
        #expect(bridge.protocolVersion == .v3_1_1)
        #expect(!bridge.cleanSession)
        #expect(bridge.keepaliveInterval == 60)
        #expect(bridge.restartTimeout == .backoff(base: 5, cap: 30))
        #expect(bridge.tryPrivate)
        #expect(bridge.notifications && !bridge.notificationsLocalOnly)
        #expect(bridge.attemptUnsubscribe && bridge.outgoingRetain)
        #expect(!bridge.roundRobin)
        #expect(bridge.startType == .automatic)
        #expect(bridge.idleTimeout == 60 && bridge.threshold == 10)
        #expect(bridge.maxPacketSize == 0)
        #expect(!bridge.tls.isEnabled && bridge.tls.minimumVersion == .tls12 && !bridge.tls.insecure)
        #expect(bridge.remoteClientID(hostname: "edge1") == "central.edge1")
        #expect(bridge.localClientID(hostname: "edge1") == "local.central.edge1")
        #expect(bridge.notificationTopic(hostname: "edge1") == "$SYS/broker/connection/central.edge1/state")
    }

    @Test("every bridge key is read")
    func everyKey() throws {
        let configuration = try MosquittoConfigParser.parse(
            """
            connection checkpoint-7
            addresses 10.0.0.1:8883 backup.example.com [::1]:1885 fe80::1:1886
            topic lpr/# out 1 edge/ site7/
            topic config/# in 2 "" site7/
            topic "" both 0 local/state remote/state
            bridge_protocol_version mqttv50
            cleansession true
            local_clientid bridge-local
            remote_clientid bridge-remote
            remote_username edge
            bridge_jwt_command cat /run/secrets/edge.jwt
            keepalive_interval 30
            restart_timeout 20
            try_private false
            notifications true
            notifications_local_only true
            notification_topic edges/7/bridge
            bridge_attempt_unsubscribe false
            bridge_outgoing_retain false
            bridge_cafile /etc/databus/ca.crt
            bridge_capath /etc/databus/cas
            bridge_certfile /etc/databus/edge.crt
            bridge_keyfile /etc/databus/edge.key
            bridge_insecure true
            bridge_tls_version tlsv1.3
            bridge_max_packet_size 65536
            round_robin true
            start_type lazy
            idle_timeout 120
            threshold 50
            """
        )
        let bridge = try #require(configuration.bridges.first)
        #expect(
            bridge.addresses == [
                .init(host: "10.0.0.1", port: 8883), .init(host: "backup.example.com", port: 1883), .init(host: "::1", port: 1885),
                .init(host: "fe80::1", port: 1886),
            ]
        )
        #expect(
            bridge.topics == [
                .init(pattern: "lpr/#", direction: .out, qos: .atLeastOnce, localPrefix: "edge/", remotePrefix: "site7/"),
                .init(pattern: "config/#", direction: .in, qos: .exactlyOnce, localPrefix: "", remotePrefix: "site7/"),
                .init(pattern: "", direction: .both, qos: .atMostOnce, localPrefix: "local/state", remotePrefix: "remote/state"),
            ]
        )
        #expect(bridge.topics[0].localFilter == "edge/lpr/#" && bridge.topics[0].remoteFilter == "site7/lpr/#")
        #expect(bridge.protocolVersion == .v5)
        #expect(bridge.cleanSession)
        #expect(bridge.localClientIDSetting == "bridge-local" && bridge.remoteClientIDSetting == "bridge-remote")
        #expect(bridge.remoteUsername == "edge")
        #expect(bridge.jwtCommand == "cat /run/secrets/edge.jwt")
        #expect(bridge.keepaliveInterval == 30)
        #expect(bridge.restartTimeout == .constant(seconds: 20))
        #expect(!bridge.tryPrivate)
        #expect(bridge.notificationsLocalOnly)
        #expect(bridge.notificationTopic(hostname: "x") == "edges/7/bridge")
        #expect(!bridge.attemptUnsubscribe && !bridge.outgoingRetain)
        #expect(bridge.tls.caFile == "/etc/databus/ca.crt" && bridge.tls.caPath == "/etc/databus/cas")
        #expect(bridge.tls.certFile == "/etc/databus/edge.crt" && bridge.tls.keyFile == "/etc/databus/edge.key")
        #expect(bridge.tls.insecure && bridge.tls.minimumVersion == .tls13)
        #expect(bridge.maxPacketSize == 65536)
        #expect(bridge.roundRobin)
        #expect(bridge.startType == .lazy && bridge.idleTimeout == 120 && bridge.threshold == 50)
    }

    @Test("restart_timeout BASE CAP is a backoff; the older clientid, username and password keys still work")
    func backoffAndAliases() throws {
        let configuration = try MosquittoConfigParser.parse(
            """
            connection a
            address 127.0.0.1:1884
            topic # both 2
            restart_timeout 10 60
            clientid old-style
            username u
            password p
            """
        )
        let bridge = try #require(configuration.bridges.first)
        #expect(bridge.restartTimeout == .backoff(base: 10, cap: 60))
        #expect(bridge.remoteClientIDSetting == "old-style" && bridge.remoteUsername == "u" && bridge.remotePassword == "p")
    }

    @Test("keys of two bridges go to the connection block they follow; listener keys stay the listener's")
    func twoBridges() throws {
        let configuration = try MosquittoConfigParser.parse(
            """
            listener 1883
            connection first
            address one.example.com
            topic a/# out 1
            connection second
            address two.example.com:1884
            topic b/# in 2
            listener 1884
            """
        )
        #expect(configuration.bridges.map(\.name) == ["first", "second"])
        #expect(configuration.bridges[0].topics.map(\.pattern) == ["a/#"])
        #expect(configuration.bridges[1].topics.map(\.pattern) == ["b/#"])
        #expect(configuration.bridges[1].addresses == [.init(host: "two.example.com", port: 1884)])
        #expect(configuration.listeners.map(\.port) == [1883, 1884])
    }

    @Test(
        "a bad bridge line is an error naming the file, the line and the key",
        arguments: [
            ("address x:1\ntopic #", 1, "address", "is a bridge key"),
            ("connection a\naddress host:99999\ntopic #", 2, "address", "port"),
            ("connection a\naddress\ntopic #", 2, "address", "host[:port]"),
            ("connection a\naddress h\naddress h2\ntopic #", 3, "address", "twice"),
            ("connection a\naddress h\ntopic # sideways", 3, "topic", "out, in or both"),
            ("connection a\naddress h\ntopic # out 3", 3, "topic", "0, 1 or 2"),
            ("connection a\naddress h\ntopic # out 1 lo+cal/ r/", 3, "topic", "wildcard"),
            ("connection a\naddress h\ntopic \"\" out 1 local \"\"", 3, "topic", "empty pattern"),
            ("connection a\naddress h\ntopic a/#/b", 3, "topic", "not a valid filter"),
            ("connection a\naddress h\ntopic #\nbridge_protocol_version mqttv6", 4, "bridge_protocol_version", "mqttv50"),
            ("connection a\naddress h\ntopic #\nkeepalive_interval 2", 4, "keepalive_interval", "5...65535"),
            ("connection a\naddress h\ntopic #\nrestart_timeout 30 10", 4, "restart_timeout", "above the base"),
            ("connection a\naddress h\ntopic #\nstart_type manual", 4, "start_type", "automatic, lazy or once"),
            ("connection a\naddress h\ntopic #\nbridge_tls_version sslv3", 4, "bridge_tls_version", "tlsv1.2"),
            ("connection a\naddress h\ntopic #\nnotification_topic a/+/b", 4, "notification_topic", "topic name"),
            ("connection a\naddress h\ntopic #\ncleansession maybe", 4, "cleansession", "true or false"),
            ("connection a\naddress h\ntopic #\nconnection a", 4, "connection", "defined already"),
            ("connection a\naddress h\ntopic #\nlocal_username edge", 4, "local_username", "does not support yet"),
            ("connection a\naddress h\ntopic #\nbridge_psk 00ff", 4, "bridge_psk", "does not support yet"),
            ("connection a\naddress h\ntopic #\nbridge_bind_address 10.0.0.2", 4, "bridge_bind_address", "does not support yet"),
            ("connection a\naddress h\ntopic #\nbridge_max_packet_size 10", 4, "bridge_max_packet_size", "at least 20"),
        ] as [(String, Int, String, String)]
    )
    func badLine(text: String, line: Int, key: String, message: String) throws {
        let error = try #require(parseError(text))
        #expect(error.file == "bridge.conf")
        #expect(error.line == line)
        #expect(error.key == key)
        #expect(error.message.contains(message), "\(error)")
    }

    @Test(
        "a bridge that cannot work is an error naming its connection line",
        arguments: [
            ("listener 1883\nconnection a\ntopic #", "no address"),
            ("listener 1883\nconnection a\naddress h", "no topic"),
            ("listener 1883\nconnection a\naddress h\ntopic #\nremote_password secret", "needs remote_username"),
            ("listener 1883\nconnection a\naddress h\ntopic #\nremote_username u\nremote_password p\nbridge_jwt_command echo t", "cannot both"),
            ("listener 1883\nconnection a\naddress h\ntopic #\nbridge_cafile ca.crt\nbridge_certfile c.crt", "go together"),
            ("listener 1883\nconnection a\naddress h\ntopic #\nbridge_certfile c.crt\nbridge_keyfile c.key", "bridge_cafile or bridge_capath"),
            (
                "listener 1883\nconnection a\naddress h\ntopic #\nconnection b\naddress h\ntopic #\nremote_clientid a.x\nlocal_clientid same\nconnection c\naddress h\ntopic #\nlocal_clientid same",
                "local client identifier"
            ),
        ] as [(String, String)]
    )
    func unworkableBridge(text: String, message: String) throws {
        let error = try #require(parseError(text))
        #expect(error.key == "connection")
        #expect(error.line >= 2)
        #expect(error.message.contains(message), "\(error)")
    }

    @Test("bridge_jwt_command may hold spaces and needs remote_username before MQTT 5 only")
    func jwtCommand() throws {
        let configuration = try MosquittoConfigParser.parse(
            """
            connection cloud
            address cloud.example.com:8883
            topic lpr/# out 1
            bridge_protocol_version mqttv50
            bridge_jwt_command /usr/local/bin/device-token --audience lpr
            """
        )
        #expect(configuration.bridges.first?.jwtCommand == "/usr/local/bin/device-token --audience lpr")
    }
}
