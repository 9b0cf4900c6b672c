import Foundation
import LPRModel

/// What the applied configuration lets through: `confidence_threshold` drops detections read
/// with less confidence, and `detection_interval` (milliseconds) publishes at most one
/// detection per interval of capture time. A detection that matched the edge watch-list is
/// never held back by the interval. Pure: the agent asks, then records what it published.
public struct DetectionFilter: Sendable, Hashable {
    /// Detections read with less confidence are not published; `nil` lets all through.
    public var confidenceThreshold: Double?
    /// The least capture time between two published detections; `nil` or zero for none.
    public var minimumInterval: TimeInterval?
    /// The capture time of the last detection published.
    public private(set) var lastPublished: Date?

    public enum Decision: Sendable, Hashable {
        case publish
        /// Read with `confidence`, below the threshold.
        case belowConfidence(Double)
        /// Captured `elapsed` seconds after the last one published, inside the interval.
        case withinInterval(elapsed: TimeInterval)
    }

    public init(confidenceThreshold: Double? = nil, minimumInterval: TimeInterval? = nil) {
        self.confidenceThreshold = confidenceThreshold
        self.minimumInterval = minimumInterval
    }

    /// The filter of an applied configuration.
    public init(configuration: CameraConfiguration?) {
        self.init(
            confidenceThreshold: configuration?.confidenceThreshold,
            minimumInterval: configuration?.detectionInterval.map { $0 / 1000 }
        )
    }

    /// Takes a new configuration's thresholds, keeping when the last detection went out.
    public mutating func reconfigure(_ configuration: CameraConfiguration?) {
        let last = lastPublished
        self = DetectionFilter(configuration: configuration)
        lastPublished = last
    }

    /// The confidence a detection was read with: `confidence_score`, else its best plate's.
    public static func confidence(of detection: Detection) -> Double? {
        detection.data.confidenceScore ?? detection.data.plates.compactMap(\.confidence).max()
    }

    /// Decides about one detection; a `publish` decision is recorded as published.
    ///
    /// - Parameter watchlisted: whether it matched the edge watch-list (the interval does not apply).
    public mutating func decide(_ detection: Detection, watchlisted: Bool = false) -> Decision {
        if let threshold = confidenceThreshold, let confidence = Self.confidence(of: detection), confidence < threshold {
            return .belowConfidence(confidence)
        }
        if !watchlisted, let interval = minimumInterval, interval > 0, let last = lastPublished {
            let elapsed = detection.timestamp.timeIntervalSince(last)
            if elapsed >= 0 && elapsed < interval { return .withinInterval(elapsed: elapsed) }
        }
        if lastPublished.map({ detection.timestamp > $0 }) ?? true { lastPublished = detection.timestamp }
        return .publish
    }
}
