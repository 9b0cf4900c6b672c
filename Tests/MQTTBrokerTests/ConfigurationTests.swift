import DatabusTestSupport
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import Testing

/// mosquitto.conf as ``MosquittoConfigParser`` reads it: every supported key, mosquitto's
/// defaults, include_dir, and errors that name the file, the line and the key.
@Suite("Configuration")
struct ConfigurationTests {
    /// Parses `text` and returns the error it must fail with.
    private func parseError(_ text: String, file: String = "broker.conf", sourceLocation: SourceLocation = #_sourceLocation) -> ConfigurationError? {
        do {
            let configuration = try MosquittoConfigParser.parse(text, file: file)
            Issue.record("parsed without error: \(configuration)", sourceLocation: sourceLocation)
            return nil
        } catch {
            return error
        }
    }

    @Test("every supported key is read with mosquitto's meaning")
    func everyKey() throws {
        let text = """
            # A configuration that sets every key Databus reads.
            per_listener_settings false
            allow_anonymous true
            max_connections 500

            listener 1884 127.0.0.1
            max_connections 50
            listener 8883
            max_inflight_messages 5
            max_queued_messages 200
            max_queued_bytes 1048576
            message_size_limit 65536
            max_packet_size 131072
            max_keepalive 120
            persistent_client_expiration 2d
            persistence true
            persistence_location /var/lib/databus/
            persistence_max_bytes 512M
            backpressure false
            retain_available false
            allow_zero_length_clientid false
            auto_id_prefix dbx-
            sys_interval 30
            set_tcp_nodelay false
            threads 1
            log_type error
            log_type warning
            log_dest stdout
            log_dest file /var/log/databus/broker.log
            connect_timeout 5
            max_topic_alias 20
            metrics_listener 9100 127.0.0.1
            """
        let configuration = try MosquittoConfigParser.parse(text, file: "full.conf")
        #expect(configuration.listeners.map(\.port) == [1884, 8883])
        #expect(configuration.listeners.map(\.address) == ["127.0.0.1", nil])
        #expect(configuration.listeners.map(\.maxConnections) == [50, -1])
        #expect(configuration.perListenerSettings == false)
        #expect(configuration.allowAnonymous == true)
        #expect(configuration.maxInflightMessages == 5)
        #expect(configuration.maxQueuedMessages == 200)
        #expect(configuration.maxQueuedBytes == 1_048_576)
        #expect(configuration.messageSizeLimit == 65_536)
        #expect(configuration.maxPacketSize == 131_072)
        #expect(configuration.maxKeepalive == 120)
        #expect(configuration.persistentClientExpiration == .seconds(2 * 24 * 3600))
        #expect(configuration.persistence == true)
        #expect(configuration.persistenceLocation == "/var/lib/databus/")
        #expect(configuration.persistenceMaxBytes == 512 << 20)
        #expect(configuration.backpressure == false)
        #expect(configuration.retainAvailable == false)
        #expect(configuration.allowZeroLengthClientID == false)
        #expect(configuration.autoIDPrefix == "dbx-")
        #expect(configuration.sysInterval == 30)
        #expect(configuration.setTCPNoDelay == false)
        #expect(configuration.threads == 1)
        #expect(configuration.logTypes == [.error, .warning])
        #expect(configuration.logDestinations == [.stdout, .file("/var/log/databus/broker.log")])
        #expect(configuration.connectTimeout == 5)
        #expect(configuration.maxTopicAlias == 20)
        #expect(configuration.metricsListener == BrokerConfiguration.Listener(port: 9100, address: "127.0.0.1"))
    }

    @Test("an empty file gives mosquitto's defaults (and TCP_NODELAY on)")
    func defaults() throws {
        let configuration = try MosquittoConfigParser.parse("", file: "empty.conf")
        #expect(configuration.listeners.isEmpty)
        #expect(configuration.allowAnonymous == false)
        #expect(configuration.perListenerSettings == false)
        #expect(configuration.maxInflightMessages == 20)
        // Not set: no count limit for persistent sessions kept in the store, 1000 for others.
        #expect(configuration.maxQueuedMessages == nil)
        #expect(configuration.persistenceMaxBytes == 1 << 30)
        #expect(configuration.backpressure == true)
        #expect(configuration.maxQueuedBytes == 0)
        #expect(configuration.messageSizeLimit == 0)
        #expect(configuration.maxPacketSize == 0)
        #expect(configuration.maxKeepalive == 65_535)
        #expect(configuration.persistentClientExpiration == nil)
        #expect(configuration.persistence == false)
        #expect(configuration.retainAvailable == true)
        #expect(configuration.allowZeroLengthClientID == true)
        #expect(configuration.autoIDPrefix == "auto-")
        #expect(configuration.sysInterval == 10)
        #expect(configuration.setTCPNoDelay == true)
        #expect(configuration.maxTopicAlias == 10)
    }

    @Test("the standalone configuration listens on 127.0.0.1 and ::1 port 1883 and allows anonymous clients")
    func standalone() {
        let configuration = BrokerConfiguration.standalone
        #expect(configuration.listeners.map(\.port) == [1883, 1883])
        #expect(Set(configuration.listeners.compactMap(\.address)) == ["127.0.0.1", "::1"])
        #expect(configuration.allowAnonymous)
    }

    @Test(
        "persistent_client_expiration takes hours, days, weeks, months and years",
        arguments: [("3h", 3 * 3600), ("1d", 86_400), ("2w", 14 * 86_400), ("1m", 30 * 86_400), ("1y", 365 * 86_400)]
    )
    func expirationUnits(text: String, seconds: Int) throws {
        let configuration = try MosquittoConfigParser.parse("persistent_client_expiration \(text)")
        #expect(configuration.persistentClientExpiration == .seconds(seconds))
    }

    @Test("comments, blank lines, indentation, tabs and extra spaces are accepted")
    func layout() throws {
        let text = "# comment\n\n   # indented comment\nlistener\t1885\t127.0.0.1\n  max_inflight_messages   7  \nallow_anonymous true\n"
        let configuration = try MosquittoConfigParser.parse(text, file: "spaced.conf")
        #expect(configuration.listeners == [BrokerConfiguration.Listener(port: 1885, address: "127.0.0.1")])
        #expect(configuration.maxInflightMessages == 7)
        #expect(configuration.allowAnonymous)
    }

    @Test(
        "a file with CRLF line ends is read line by line, as mosquitto reads it"
    )
    func crlf() throws {
        let text = "# written on Windows\r\nlistener 1885 127.0.0.1\r\nmax_inflight_messages 7\r\nallow_anonymous true\r\n"
        let configuration = try MosquittoConfigParser.parse(text, file: "crlf.conf")
        #expect(configuration.listeners == [BrokerConfiguration.Listener(port: 1885, address: "127.0.0.1")])
        #expect(configuration.maxInflightMessages == 7)
        #expect(configuration.allowAnonymous)
    }

    @Test("per_listener_settings true: allow_anonymous belongs to the listener it follows")
    func perListenerSettings() throws {
        let text = """
            per_listener_settings true
            listener 1883 127.0.0.1
            allow_anonymous true
            listener 1884 127.0.0.1
            allow_anonymous false
            listener 1885 127.0.0.1
            """
        let configuration = try MosquittoConfigParser.parse(text)
        #expect(configuration.perListenerSettings)
        #expect(configuration.listeners.map(\.allowAnonymous) == [true, false, nil])
    }

    @Test("per_listener_settings true: anonymous clients are refused on a listener that does not allow them")
    func perListenerAnonymousAtRuntime() async throws {
        var configuration = try MosquittoConfigParser.parse(
            """
            per_listener_settings true
            listener 0 127.0.0.1
            allow_anonymous true
            listener 0 127.0.0.1
            sys_interval 0
            """
        )
        configuration.sysInterval = 0
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let addresses = try await broker.start()
        do {
            #expect(addresses.count == 2)
            let (open, openAck) = try await connect(port: addresses[0].port!, "on-open-listener")
            await open.close()
            let (closed, closedAck) = try await connect(port: addresses[1].port!, "on-closed-listener")
            await closed.close()
            #expect(openAck.reasonCode == .success)
            #expect(closedAck.reasonCode == .notAuthorized)
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }

    @Test("a configuration read from text runs a broker that clients can use")
    func parsedConfigurationRuns() async throws {
        let configuration = try MosquittoConfigParser.parse(
            """
            listener 0 127.0.0.1
            allow_anonymous true
            sys_interval 0
            max_inflight_messages 3
            """
        )
        try await withBroker(configuration) { port in
            let (client, connack) = try await connect(port: port, "from-file")
            await client.close()
            #expect(connack.reasonCode == .success)
            #expect(connack.properties.receiveMaximum == 3)
        }
    }

    @Test("an unknown key is an error naming the file, the line and the key")
    func unknownKey() throws {
        let error = try #require(parseError("listener 1883\n\n# comment\nmax_inflite_messages 10\n", file: "/etc/databus/broker.conf"))
        #expect(error.file == "/etc/databus/broker.conf")
        #expect(error.line == 4)
        #expect(error.key == "max_inflite_messages")
        #expect(error.description.contains("/etc/databus/broker.conf:4"))
        #expect(error.description.contains("max_inflite_messages"))
    }

    @Test(
        "a bad value is an error naming the file, the line and the key",
        arguments: [
            ("max_inflight_messages", "lots"),
            ("max_inflight_messages", ""),
            ("max_queued_messages", "-3"),
            ("allow_anonymous", "maybe"),
            ("listener", "port"),
            ("listener", "70000"),
            ("max_packet_size", "10"),
            ("message_size_limit", "300000000"),
            ("max_keepalive", "70000"),
            ("persistent_client_expiration", "5x"),
            ("persistent_client_expiration", "d"),
            ("sys_interval", "-1"),
            ("set_tcp_nodelay", "yes"),
            ("log_type", "verbose"),
            ("log_dest", "carrier-pigeon"),
            ("retain_available", "2"),
            ("metrics_listener", "http"),
            ("persistence_max_bytes", "lots"),
            ("persistence_max_bytes", "-1G"),
            ("backpressure", "sometimes"),
            ("threads", "-1"),
            ("threads", "many"),
        ]
    )
    func badValue(key: String, value: String) throws {
        let error = try #require(parseError("# first line\nallow_anonymous true\n\(key) \(value)\n", file: "bad.conf"))
        #expect(error.file == "bad.conf")
        #expect(error.line == 3)
        #expect(error.key == key)
    }

    @Test(
        "a # comment after a value is ignored, as mosquitto 2.0.11 ignores it"
    )
    func trailingComment() throws {
        let configuration = try MosquittoConfigParser.parse(
            "listener 1885 127.0.0.1 # local only\nmax_inflight_messages 5 # five\nallow_anonymous true # for tests\n"
        )
        #expect(configuration.listeners == [BrokerConfiguration.Listener(port: 1885, address: "127.0.0.1")])
        #expect(configuration.maxInflightMessages == 5)
        #expect(configuration.allowAnonymous)
    }

    @Test(
        "booleans accept 0 and 1 as mosquitto does"
    )
    func numericBooleans() throws {
        let configuration = try MosquittoConfigParser.parse("allow_anonymous 1\nretain_available 0\nset_tcp_nodelay 0\npersistence 1\n")
        #expect(configuration.allowAnonymous == true)
        #expect(configuration.retainAvailable == false)
        #expect(configuration.setTCPNoDelay == false)
        #expect(configuration.persistence == true)
    }

    @Test("include_dir reads the folder's .conf files in alphabetical order")
    func includeDir() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("databus-include-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "max_inflight_messages 30\nlistener 1884\n".write(to: folder.appendingPathComponent("b-second.conf"), atomically: true, encoding: .utf8)
        try "max_inflight_messages 10\nsys_interval 5\n".write(to: folder.appendingPathComponent("a-first.conf"), atomically: true, encoding: .utf8)
        try "this is not configuration\n".write(to: folder.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)

        let main = folder.appendingPathComponent("main.conf.d")
        try "listener 1883\ninclude_dir \(folder.path)\nmax_queued_messages 7\n".write(to: main, atomically: true, encoding: .utf8)
        let configuration = try MosquittoConfigParser.parse(fileAt: main.path)
        #expect(configuration.maxInflightMessages == 30)
        #expect(configuration.sysInterval == 5)
        #expect(configuration.maxQueuedMessages == 7)
        #expect(configuration.listeners.map(\.port) == [1883, 1884])
    }

    @Test("an error in an included file names that file and its line")
    func includedFileError() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("databus-include-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let included = folder.appendingPathComponent("limits.conf")
        try "max_queued_messages 10\nmax_queued_messages many\n".write(to: included, atomically: true, encoding: .utf8)
        let error = try #require(parseError("listener 1883\ninclude_dir \(folder.path)\n", file: "main.conf"))
        #expect(error.file == included.path)
        #expect(error.line == 2)
        #expect(error.key == "max_queued_messages")
    }

    @Test("a missing include_dir folder is an error naming the file, the line and the key")
    func missingIncludeDir() throws {
        let error = try #require(parseError("listener 1883\ninclude_dir /nonexistent/databus/conf.d\n", file: "main.conf"))
        #expect(error.file == "main.conf")
        #expect(error.line == 2)
        #expect(error.key == "include_dir")
        #expect(error.description.contains("/nonexistent/databus/conf.d"))
    }

    @Test("a missing configuration file is an error naming the file")
    func missingFile() throws {
        do {
            _ = try MosquittoConfigParser.parse(fileAt: "/nonexistent/databus/broker.conf")
            Issue.record("parsed a file that does not exist")
        } catch {
            #expect(error.file == "/nonexistent/databus/broker.conf")
            #expect(error.description.contains("/nonexistent/databus/broker.conf"))
        }
    }
}
