/// What `databus pipeline` did with its input, counted.
public struct PipelineStatistics: Sendable, Hashable, CustomStringConvertible {
    /// Metadata lines read.
    public var framesRead = 0
    /// Messages the broker has (QoS 0: written; QoS 1/2: acknowledged).
    public var published = 0
    /// Frames not published because the filter removed all their results.
    public var filteredOut = 0
    /// Lines that were not JSON objects.
    public var invalid = 0
    /// Messages dropped from the bounded queue while the broker was unreachable.
    public var dropped = 0
    /// Messages the broker refused (MQTT 5 reason code) or that failed otherwise.
    public var failed = 0
    /// Frames published without their JPEG because it could not be found.
    public var missingFrames = 0
    /// Results kept by the filter, per label.
    public var keptPerLabel: [String: Int] = [:]
    /// Results removed by the filter, per label.
    public var removedPerLabel: [String: Int] = [:]

    public init() {}

    mutating func add(_ outcome: PipelineFilter.Outcome) {
        for (label, count) in outcome.kept { keptPerLabel[label, default: 0] += count }
        for (label, count) in outcome.removed { removedPerLabel[label, default: 0] += count }
    }

    public var description: String {
        var text =
            "frames read \(framesRead), published \(published), filtered out \(filteredOut), invalid \(invalid), "
            + "dropped \(dropped), failed \(failed), without JPEG \(missingFrames)"
        let labels = Set(keptPerLabel.keys).union(removedPerLabel.keys).sorted()
        if !labels.isEmpty {
            text += "; per label (kept/removed): "
            text += labels.map { "\($0) \(keptPerLabel[$0, default: 0])/\(removedPerLabel[$0, default: 0])" }.joined(separator: ", ")
        }
        return text
    }
}
