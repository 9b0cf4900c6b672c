import Foundation
import LPRModel

/// One line of pipeline metadata, made ready to publish: the pure part of `databus pipeline`.
public struct PipelineFrame: Sendable, Hashable {
    /// The frame's id: its `frame_id`, or its line number (from 0) when it has none.
    public var id: Int
    /// The metadata to publish (after the filter).
    public var metadata: JSONValue

    public init(id: Int, metadata: JSONValue) {
        self.id = id
        self.metadata = metadata
    }

    /// What became of one metadata line.
    public enum Decision: Sendable, Hashable {
        /// Publish this frame.
        case publish(PipelineFrame)
        /// Every result of the frame was below its threshold: nothing to publish.
        case filteredOut(id: Int)
        /// The line is not a JSON object; the reason says why.
        case invalid(String)
    }

    /// Parses metadata line `index` (from 0) and applies `filter`.
    ///
    /// - Returns: the decision and the filter's per-label counts.
    public static func decide(line: String, index: Int, filter: PipelineFilter?) -> (Decision, PipelineFilter.Outcome?) {
        let metadata: JSONValue
        do {
            metadata = try JSONValue.parse(line)
        } catch {
            return (.invalid("\(error)"), nil)
        }
        guard case .object = metadata else { return (.invalid("metadata is \(metadata.typeName), not an object"), nil) }
        var id = index
        if let frameID = metadata["frame_id"], frameID != .null {
            guard let number = frameID.intValue, number >= 0 else {
                return (.invalid("frame_id is \(frameID.jsonText), not a whole number"), nil)
            }
            id = number
        }
        guard let filter else { return (.publish(PipelineFrame(id: id, metadata: metadata)), nil) }
        let outcome = filter.apply(to: metadata)
        guard let filtered = outcome.metadata else { return (.filteredOut(id: id), outcome) }
        return (.publish(PipelineFrame(id: id, metadata: filtered)), outcome)
    }

    /// The MQTT payload: the metadata alone, or `[metadata, "base64 JPEG"]` with a frame, so that
    /// `msg = json.loads(payload); metadata = msg[0]; img = base64.b64decode(msg[1])` works.
    public func payload(jpeg: [UInt8]?) -> [UInt8] {
        guard let jpeg else { return metadata.jsonBytes }
        var out: [UInt8] = [UInt8(ascii: "[")]
        out.reserveCapacity(jpeg.count * 4 / 3 + 1024)
        metadata.write(to: &out)
        out.append(contentsOf: [UInt8(ascii: ","), UInt8(ascii: "\"")])
        out.append(contentsOf: Array(Data(jpeg).base64EncodedData()))
        out.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: "]")])
        return out
    }
}
