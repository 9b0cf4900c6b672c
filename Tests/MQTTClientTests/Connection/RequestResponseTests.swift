import DatabusTestSupport
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// MQTT 5 request/response: response topic and correlation data, against mosquitto and `databus broker`.
@Suite("Request/response against mosquitto and databus broker", .serialized, .timeLimit(.minutes(2)))
struct RequestResponseTests {
    @Test("concurrent requests each get their own reply from the responder", arguments: TestBrokerKind.allCases)
    func requestsGetTheirReplies(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "gateway-1")) { gateway in
                let responder = Task {
                    try await gateway.respond(to: "gateway/1/http/request") { request in
                        ByteBuffer(string: "200 \(request.payloadString.uppercased())")
                    }
                }
                defer { responder.cancel() }
                // The responder's subscription must exist before requests go out.
                try await withDeadline(.seconds(5), "the responder to subscribe") {
                    while true {
                        let result = try await gateway.publish(topic: "gateway/1/http/request", payload: "ping", qos: .atLeastOnce)
                        if result.reasonCode == .success { return }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                }
                try await withClient(.test(broker, id: "lpr-server")) { server in
                    let replies = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                        for index in 0..<5 {
                            group.addTask {
                                let reply = try await server.request(topic: "gateway/1/http/request", payload: "get /state/\(index)")
                                return (index, reply.payloadString)
                            }
                        }
                        var replies: [Int: String] = [:]
                        for try await (index, reply) in group { replies[index] = reply }
                        return replies
                    }
                    #expect(replies == Dictionary(uniqueKeysWithValues: (0..<5).map { ($0, "200 GET /STATE/\($0)") }))
                }
            }
        }
    }

    @Test("a request nobody answers times out on the client's clock", arguments: TestBrokerKind.allCases)
    func requestTimesOut(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            let clock = ManualClock()
            try await withClient(.test(broker, id: "lpr-server"), clock: clock) { server in
                let request = Task { try await server.request(topic: "nobody/listens", payload: "hello", timeout: .seconds(5)) }
                // The keep-alive task sleeps too; the request's timeout is the second sleeper.
                try await clock.waitForSleepers(2)
                clock.advance(by: .seconds(5))
                do {
                    _ = try await request.value
                    Issue.record("the request returned without a reply")
                } catch let error as MQTTClientError {
                    #expect(error.code == .timeout)
                }
            }
        }
    }

    @Test("request/response needs MQTT 5", arguments: TestBrokerKind.allCases)
    func requestNeedsVersion5(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "old-client", version: .v3_1_1)) { client in
                do {
                    _ = try await client.request(topic: "anything", payload: "x")
                    Issue.record("a 3.1.1 request did not fail")
                } catch let error as MQTTClientError {
                    #expect(error.code == .unsupportedInProtocolVersion)
                }
            }
        }
    }
}
