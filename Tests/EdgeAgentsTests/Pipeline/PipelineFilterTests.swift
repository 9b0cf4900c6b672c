import DatabusTestSupport
import EdgeAgents
import LPRModel
import Testing

@Suite("Pipeline filters")
struct PipelineFilterTests {
    static let geti = try! Fixtures.exampleText("pipeline-metadata-detection.json")

    /// A DL Streamer (gvametaconvert) frame with a person at 0.9 and a car at 0.3.
    static let dlstreamer = #"""
        {"objects":[{"detection":{"bounding_box":{"x_max":0.5,"x_min":0.1,"y_max":0.9,"y_min":0.2},"confidence":0.9,"label":"person","label_id":1},"h":100,"roi_type":"person","w":50,"x":10,"y":20},{"detection":{"bounding_box":{"x_max":0.8,"x_min":0.6,"y_max":0.7,"y_min":0.5},"confidence":0.3,"label":"car","label_id":2},"h":40,"roi_type":"car","w":60,"x":300,"y":200}],"resolution":{"height":480,"width":640},"timestamp":2,"frame_id":7}
        """#

    func decide(_ line: String, _ filter: PipelineFilter?) -> (PipelineFrame.Decision, PipelineFilter.Outcome?) {
        PipelineFrame.decide(line: line, index: 0, filter: filter)
    }

    @Test("detection, Geti form: an annotation below its threshold goes, the rest stays exactly as it came")
    func getiDetection() throws {
        let filter = PipelineFilter(kind: .detection, labelScore: ["box": 0.95, "shipping label": 0.4])
        let (decision, outcome) = decide(Self.geti, filter)
        guard case .publish(let frame) = decision else {
            Issue.record("expected a frame to publish, got \(decision)")
            return
        }
        let annotations = try #require(frame.metadata["predictions"]?["annotations"]?.arrayValue)
        #expect(annotations.count == 1)
        #expect(annotations[0]["labels"]?.arrayValue?.first?["name"] == .string("shipping label"))
        // Untouched: the shape's integers, the probability's digits, nulls and the member order.
        #expect(frame.metadata.jsonText.contains(#"{"type":"RECTANGLE","x":494,"height":154,"y":143,"width":83}"#))
        #expect(frame.metadata.jsonText.contains(#""probability":0.7351013422012329"#))
        #expect(frame.metadata.jsonText.hasPrefix(#"{"frame_id":0,"predictions":{"labels_to_revisit_full_scene":null,"kind":"prediction""#))
        #expect(outcome?.removed == ["box": 1])
        #expect(outcome?.kept == ["shipping label": 1])
    }

    @Test("a frame whose detections were all removed is not published; one that had none is")
    func emptyFrames() {
        let strict = PipelineFilter(kind: .detection, labelScore: ["box": 0.99, "shipping label": 0.99])
        #expect(decide(Self.geti, strict).0 == .filteredOut(id: 0))
        let none = #"{"frame_id":3,"objects":[],"resolution":{"height":480,"width":640}}"#
        guard case .publish(let frame) = decide(none, strict).0 else {
            Issue.record("a frame without detections must be published")
            return
        }
        #expect(frame.metadata.jsonText == none)
        #expect(frame.id == 3)
    }

    @Test("labels without a threshold pass")
    func unlistedLabelsPass() {
        let filter = PipelineFilter(kind: .detection, labelScore: ["box": 0.99])
        guard case .publish(let frame) = decide(Self.geti, filter).0 else {
            Issue.record("the shipping label has no threshold and must keep the frame")
            return
        }
        #expect(frame.metadata["predictions"]?["annotations"]?.arrayValue?.count == 1)
    }

    @Test("detection, DL Streamer form: objects below threshold are removed, other fields kept")
    func dlstreamerDetection() throws {
        let filter = PipelineFilter(kind: .detection, labelScore: ["car": 0.5, "person": 0.5])
        let (decision, outcome) = decide(Self.dlstreamer, filter)
        guard case .publish(let frame) = decision else {
            Issue.record("expected a frame to publish")
            return
        }
        #expect(frame.id == 7)
        let objects = try #require(frame.metadata["objects"]?.arrayValue)
        #expect(objects.map { $0["roi_type"] } == [.string("person")])
        #expect(frame.metadata["timestamp"] == .number("2"))
        #expect(frame.metadata.jsonText.contains(#""resolution":{"height":480,"width":640},"timestamp":2,"frame_id":7"#))
        #expect(outcome?.removed == ["car": 1])
    }

    @Test("classification: label/score pairs below threshold are removed; all removed means not published")
    func classification() throws {
        let line =
            #"{"frame_id":1,"objects":[{"tensors":[{"label":"defect","score":0.2,"name":"cls"},{"label":"ok","score":0.9,"name":"cls"}],"x":1}]}"#
        let filter = PipelineFilter(kind: .classification, labelScore: ["defect": 0.5])
        guard case .publish(let frame) = decide(line, filter).0 else {
            Issue.record("expected a frame to publish")
            return
        }
        #expect(frame.metadata.jsonText == #"{"frame_id":1,"objects":[{"tensors":[{"label":"ok","score":0.9,"name":"cls"}],"x":1}]}"#)
        let strict = PipelineFilter(kind: .classification, labelScore: ["defect": 0.5, "ok": 0.95])
        #expect(decide(line, strict).0 == .filteredOut(id: 1))
    }

    @Test("classification on Geti labels: an annotation left without labels goes")
    func classificationGeti() throws {
        let filter = PipelineFilter(kind: .classification, labelScore: ["box": 0.95])
        guard case .publish(let frame) = decide(Self.geti, filter).0 else {
            Issue.record("expected a frame to publish")
            return
        }
        let annotations = try #require(frame.metadata["predictions"]?["annotations"]?.arrayValue)
        #expect(annotations.count == 1)
    }

    @Test("a line that is not a JSON object, or a bad frame_id, is invalid, not a crash")
    func invalidLines() {
        for line in ["not json", "[1,2]", #"{"frame_id":"x"}"#, #"{"frame_id":-1}"#] {
            guard case .invalid = decide(line, nil).0 else {
                Issue.record("\(line) should be invalid")
                continue
            }
        }
    }

    @Test("the message is [metadata, base64 JPEG] with a frame, the metadata alone without")
    func payload() throws {
        let frame = PipelineFrame(id: 0, metadata: try JSONValue.parse(#"{"frame_id":0,"v":2}"#))
        #expect(String(decoding: frame.payload(jpeg: nil), as: UTF8.self) == #"{"frame_id":0,"v":2}"#)
        #expect(String(decoding: frame.payload(jpeg: [0xFF, 0xD8, 0xFF, 0xD9]), as: UTF8.self) == #"[{"frame_id":0,"v":2},"/9j/2Q=="]"#)
    }
}
