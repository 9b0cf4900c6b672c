import LPRModel

/// The `filter` of a pipeline's `mqtt_publisher` configuration: drops results whose score is
/// below their label's threshold.
///
/// - Detection (`"type": "detection"`): in DL Streamer's form, each entry of `objects` is one
///   detection (`detection.label`, `detection.confidence`); in Geti's form, each entry of
///   `predictions.annotations` is one, and it goes only when all of its `labels`
///   (`name`, `probability`) are below their thresholds.
/// - Classification (`"type": "classification"`): every label/score pair in the metadata — an
///   object with `label` (or `name`) and `score` (or `confidence`, `probability`) inside an
///   array, as in `tensors`, `classification` or a Geti annotation's `labels` — is removed when
///   below its threshold (a Geti annotation left with no labels goes too).
///
/// Labels without a threshold pass. A frame whose results were all removed is not published; a
/// frame that had none to begin with is. Everything else is kept exactly as it came.
public struct PipelineFilter: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case detection
        case classification
    }

    public var kind: Kind
    /// The lowest score published per label.
    public var labelScore: [String: Double]

    public init(kind: Kind, labelScore: [String: Double]) {
        self.kind = kind
        self.labelScore = labelScore
    }

    /// What the filter made of one frame's metadata.
    public struct Outcome: Sendable, Hashable {
        /// The metadata to publish, or `nil` when every result of the frame was removed.
        public var metadata: JSONValue?
        /// Results kept, per label.
        public var kept: [String: Int] = [:]
        /// Results removed, per label.
        public var removed: [String: Int] = [:]
    }

    /// Applies the filter to one frame's metadata.
    public func apply(to metadata: JSONValue) -> Outcome {
        var outcome = Outcome(metadata: .none)
        var found = 0
        var remaining = 0
        let filtered: JSONValue
        switch kind {
        case .detection:
            filtered = filterDetections(metadata, found: &found, remaining: &remaining, outcome: &outcome)
        case .classification:
            filtered = filterClassifications(metadata, depth: 0, found: &found, remaining: &remaining, outcome: &outcome)
        }
        // `.none`, not `nil`: JSONValue is ExpressibleByNilLiteral, and a bare nil would become JSON null.
        outcome.metadata = found > 0 && remaining == 0 ? .none : .some(filtered)
        return outcome
    }

    /// Whether a result of `label` with `score` passes.
    func passes(label: String?, score: Double?) -> Bool {
        guard let label, let threshold = labelScore[label] else { return true }
        guard let score else { return true }
        return score >= threshold
    }

    private func count(_ label: String?, kept: Bool, in outcome: inout Outcome) {
        let name = label ?? "(no label)"
        if kept { outcome.kept[name, default: 0] += 1 } else { outcome.removed[name, default: 0] += 1 }
    }

    // MARK: Detection

    private func filterDetections(_ metadata: JSONValue, found: inout Int, remaining: inout Int, outcome: inout Outcome) -> JSONValue {
        var result = metadata
        if let objects = metadata["objects"]?.arrayValue {
            var kept: [JSONValue] = []
            for object in objects {
                let detection = object["detection"] ?? object
                let label = detection["label"]?.stringValue ?? object["roi_type"]?.stringValue
                let score = detection["confidence"]?.doubleValue ?? detection["score"]?.doubleValue
                let passes = passes(label: label, score: score)
                count(label, kept: passes, in: &outcome)
                found += 1
                if passes { kept.append(object) }
            }
            remaining += kept.count
            result = result.settingMember("objects", to: .array(kept))
        }
        if let predictions = metadata["predictions"], let annotations = predictions["annotations"]?.arrayValue {
            var kept: [JSONValue] = []
            for annotation in annotations {
                let labels = annotation["labels"]?.arrayValue ?? []
                // Kept when any label passes (an annotation without labels has nothing to judge).
                let passes = labels.isEmpty || labels.contains { self.passes(label: $0["name"]?.stringValue, score: $0["probability"]?.doubleValue) }
                let first = labels.first?["name"]?.stringValue
                count(first, kept: passes, in: &outcome)
                found += 1
                if passes { kept.append(annotation) }
            }
            remaining += kept.count
            result = result.settingMember("predictions", to: predictions.settingMember("annotations", to: .array(kept)))
        }
        return result
    }

    // MARK: Classification

    private static let labelKeys = ["label", "name"]
    private static let scoreKeys = ["score", "confidence", "probability"]

    /// The label and score of a classification result, when `value` is one.
    private static func classification(_ value: JSONValue) -> (label: String, score: Double)? {
        guard case .object = value else { return nil }
        guard let label = labelKeys.lazy.compactMap({ value[$0]?.stringValue }).first,
            let score = scoreKeys.lazy.compactMap({ value[$0]?.doubleValue }).first
        else { return nil }
        return (label, score)
    }

    private func filterClassifications(
        _ value: JSONValue,
        depth: Int,
        found: inout Int,
        remaining: inout Int,
        outcome: inout Outcome
    ) -> JSONValue {
        guard depth < 64 else { return value }
        switch value {
        case .array(let elements):
            var kept: [JSONValue] = []
            for element in elements {
                if let (label, score) = Self.classification(element) {
                    let passes = passes(label: label, score: score)
                    count(label, kept: passes, in: &outcome)
                    found += 1
                    if passes {
                        remaining += 1
                        kept.append(element)
                    }
                    continue
                }
                let filtered = filterClassifications(element, depth: depth + 1, found: &found, remaining: &remaining, outcome: &outcome)
                // A Geti annotation whose labels were all removed goes with them.
                if element["labels"]?.arrayValue?.isEmpty == false, filtered["labels"]?.arrayValue?.isEmpty == true { continue }
                kept.append(filtered)
            }
            return .array(kept)
        case .object(let object):
            var members: [(key: String, value: JSONValue)] = []
            for member in object {
                let value = filterClassifications(member.value, depth: depth + 1, found: &found, remaining: &remaining, outcome: &outcome)
                members.append((member.key, value))
            }
            return .object(JSONObject(members))
        default:
            return value
        }
    }
}

extension JSONValue {
    /// This object with member `key` set: in its place when present, appended otherwise. Other
    /// values come back unchanged.
    func settingMember(_ key: String, to value: JSONValue) -> JSONValue {
        guard case .object(var object) = self else { return self }
        object[key] = value
        return .object(object)
    }
}
