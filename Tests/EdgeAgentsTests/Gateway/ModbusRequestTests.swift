import DatabusTestSupport
import EdgeAgents
import Foundation
import LPRModel
import Testing

@Suite("Modbus requests to web API calls")
struct ModbusRequestTests {
    func request(_ text: String) throws -> ModbusRequest { try ModbusRequest(payload: Array(text.utf8)) }

    @Test("the field's read request becomes the documented query, in order")
    func read() throws {
        let request = try request(Fixtures.exampleText("gateway-modbus-read-request.json"))
        #expect(
            request.pathAndQuery
                == "/api/inverter/modbus?device_id=A2332407312&function_code=3&address=10056&size=1&type=U16&endianess=big&scale_factor=1"
        )
    }

    @Test("the field's write request becomes the documented query; values as they came")
    func write() throws {
        let request = try request(Fixtures.exampleText("gateway-modbus-write-request.json"))
        #expect(request.pathAndQuery == "/api/inverter/modbus?device_id=A2332407312&address=33207&function_code=16&values=170&type=U16")
        let list = try self.request(#"{"function_code":16,"device_id":"D1","address":1,"values":[1,2.5,1.0,-3],"type":"F32"}"#)
        #expect(list.pathAndQuery == "/api/inverter/modbus?device_id=D1&address=1&function_code=16&values=1,2.5,1.0,-3&type=F32")
    }

    @Test("function code 4 reads input registers; scale factors keep their form; odd characters are escaped")
    func readInputRegisters() throws {
        let request = try request(
            #"{"function_code":4,"device_id":"A b&c","address":7,"size":2,"type":"S32","endianess":"little","scale_factor":0.10}"#
        )
        #expect(
            request.pathAndQuery
                == "/api/inverter/modbus?device_id=A%20b%26c&function_code=4&address=7&size=2&type=S32&endianess=little&scale_factor=0.10"
        )
    }

    @Test(
        "invalid requests are refused with a reason, keeping what arrived",
        arguments: [
            (#"{"device_id":"D","address":1,"size":1}"#, "function_code is missing"),
            (#"{"function_code":5,"device_id":"D","address":1}"#, "function_code 5 is not supported"),
            (#"{"function_code":3,"address":1,"size":1}"#, "device_id is missing"),
            (#"{"function_code":3,"device_id":"D","address":-1,"size":1}"#, "address is -1"),
            (#"{"function_code":3,"device_id":"D","address":1}"#, "size is missing"),
            (#"{"function_code":16,"device_id":"D","address":1}"#, "values is missing"),
            (#"{"function_code":16,"device_id":"D","address":1,"values":[]}"#, "values is an empty list"),
            (#"[3]"#, "not an object"),
        ]
    )
    func invalid(text: String, reason: String) throws {
        do {
            _ = try request(text)
            Issue.record("\(text) should be refused")
        } catch let error as ModbusRequestError {
            #expect(error.reason.contains(reason), "\(error.reason)")
            #expect(error.received == (try JSONValue.parse(text)))
        }
    }

    @Test("a request that is not JSON is answered with what arrived as a string")
    func notJSON() {
        do {
            _ = try request("read register 5 please")
            Issue.record("not JSON should be refused")
        } catch let error as ModbusRequestError {
            #expect(error.received == .string("read register 5 please"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

@Suite("Gateway messages")
struct GatewayMessagesTests {
    @Test("timestamps are ISO 8601 UTC with microseconds, as the field example")
    func timestamp() {
        let date = Date(timeIntervalSince1970: 1_722_697_530.123456)
        #expect(GatewayMessages.timestamp(date) == "2024-08-03T15:05:30.123456Z")
    }

    @Test("the state is the API's fields after our timestamp and type, numbers as the API wrote them")
    func state() throws {
        let example = try JSONValue.parse(Fixtures.exampleText("gateway-state.json"))
        var api = example
        api = .object(JSONObject((api.objectValue?.members ?? []).filter { $0.key != "timestamp" && $0.key != "type" }))
        let state = GatewayMessages.state(api: api, at: Date(timeIntervalSince1970: 1_722_697_530.123456))
        #expect(state == example)
    }

    @Test("the fallback state has the field example's members")
    func fallback() throws {
        let example = try JSONValue.parse(Fixtures.exampleText("gateway-state-fallback.json"))
        let state = GatewayMessages.fallbackState(uptime: 12.5, version: "1.0.0", error: "down", at: Date())
        #expect(state.objectValue?.keys == example.objectValue?.keys)
        #expect(state["status"] == .string("api_unavailable"))
        #expect(state["uptime"] == .number("12.500"))
    }

    @Test("the modbus response wraps the request and the answer as the field example does")
    func response() throws {
        let example = try JSONValue.parse(Fixtures.exampleText("gateway-modbus-response.json"))
        let built = GatewayMessages.modbusResponse(
            request: try #require(example["request"]),
            response: try #require(example["response"]),
            at: Date(timeIntervalSince1970: 1_722_697_530.123456)
        )
        #expect(built == example)
    }

    @Test("the health check passes within 15 s of the last state publish, and fails after or without one")
    func health() throws {
        let path = NSTemporaryDirectory() + "health-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(GatewayHealth.check(path: path).healthy == false)
        let now = Date()
        try GatewayHealth.record(now - 10, at: path)
        #expect(GatewayHealth.check(path: path, now: now).healthy == true)
        try GatewayHealth.record(now - 16, at: path)
        #expect(GatewayHealth.check(path: path, now: now).healthy == false)
    }
}
