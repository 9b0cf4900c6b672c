import DatabusTestSupport
import EdgeAgents
import LPRModel
import MQTTCore
import Testing

@Suite("Pipeline configuration (mqtt_publisher)")
struct PipelineConfigurationTests {
    @Test("the field example is read with every option")
    func fieldExample() throws {
        let configuration = try PipelineConfiguration(contentsOfFile: Fixtures.examplesDirectory.appendingPathComponent("pipeline-config.json").path)
        #expect(configuration.publishFrame == true)
        #expect(configuration.topic == "dlstreamer_pipeline_results")
        #expect(configuration.qos == .atLeastOnce)
        #expect(configuration.protocolVersion == .v3_1_1)
        #expect(configuration.filter == PipelineFilter(kind: .detection, labelScore: ["shipping label": 0.4, "box": 0.4]))
        #expect(
            configuration.tls
                == .init(
                    caCertificate: "/MqttCerts/ca.crt",
                    clientKey: "/MqttCerts/client/client.key",
                    clientCertificate: "/MqttCerts/client/client.crt"
                )
        )
    }

    @Test("an empty mqtt_publisher takes the pipeline server's defaults, and unknown options are ignored")
    func defaults() throws {
        let configuration = try PipelineConfiguration(document: JSONValue.parse(#"{"mqtt_publisher": {"future_option": [1, 2]}}"#))
        #expect(configuration == PipelineConfiguration())
        #expect(configuration.publishFrame == false)
        #expect(configuration.topic == "dlstreamer_pipeline_results")
        #expect(configuration.qos == .atMostOnce)
        #expect(configuration.protocolVersion == .v3_1_1)
    }

    @Test("protocol 3, 4 and 5 are MQTT 3.1, 3.1.1 and 5.0", arguments: [(3, MQTTProtocolVersion.v3_1), (4, .v3_1_1), (5, .v5)])
    func protocols(number: Int, version: MQTTProtocolVersion) throws {
        let configuration = try PipelineConfiguration(document: JSONValue.parse(#"{"mqtt_publisher": {"protocol": \#(number)}}"#))
        #expect(configuration.protocolVersion == version)
    }

    @Test(
        "a wrong value is an error naming the option",
        arguments: [
            (#"{"mqtt_publisher": {"qos": 3}}"#, "mqtt_publisher.qos"),
            (#"{"mqtt_publisher": {"qos": "1"}}"#, "mqtt_publisher.qos"),
            (#"{"mqtt_publisher": {"protocol": 6}}"#, "mqtt_publisher.protocol"),
            (#"{"mqtt_publisher": {"publish_frame": "yes"}}"#, "mqtt_publisher.publish_frame"),
            (#"{"mqtt_publisher": {"topic": "a/+/b"}}"#, "mqtt_publisher.topic"),
            (#"{"mqtt_publisher": {"filter": {"type": "segmentation"}}}"#, "mqtt_publisher.filter.type"),
            (#"{"mqtt_publisher": {"filter": {"label_score": {}}}}"#, "mqtt_publisher.filter.type"),
            (#"{"mqtt_publisher": {"filter": {"type": "detection", "label_score": {"box": "high"}}}}"#, "mqtt_publisher.filter.label_score.box"),
            (#"{"mqtt_publisher": {"tls": {"client_key": "k.pem"}}}"#, "mqtt_publisher.tls"),
            (#"{"mqtt_publisher": []}"#, "mqtt_publisher"),
        ]
    )
    func wrongValues(text: String, field: String) throws {
        let document = try JSONValue.parse(text)
        #expect {
            _ = try PipelineConfiguration(document: document)
        } throws: { error in
            (error as? PipelineConfigurationError)?.field == field
        }
    }

    @Test("a file that is not JSON, or missing, is an error naming the file")
    func badFiles() throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = try folder.write("config.json", "{\"mqtt_publisher\": {")
        #expect {
            _ = try PipelineConfiguration(contentsOfFile: path)
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("not JSON")
        }
        #expect(throws: PipelineConfigurationError.self) { try PipelineConfiguration(contentsOfFile: folder.file("missing.json")) }
    }
}
