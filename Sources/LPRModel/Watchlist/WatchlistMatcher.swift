import Foundation

/// A detected plate that matched a watch-list entry.
public struct WatchlistMatch: Sendable, Hashable {
    /// How close the match is; exact matches rank above confusions, confusions above edits.
    public enum Kind: String, Sendable, Hashable, Comparable {
        /// The same plate once case, spaces and dashes are ignored.
        case exact
        /// The same plate once OCR confusions are folded too (distance 0).
        case confusable
        /// Within the edit distance limit after folding.
        case fuzzy

        private var rank: Int {
            switch self {
            case .exact: 0
            case .confusable: 1
            case .fuzzy: 2
            }
        }

        public static func < (lhs: Kind, rhs: Kind) -> Bool { lhs.rank < rhs.rank }
    }

    public var entry: WatchlistEntry
    /// The plate as read.
    public var plateNumber: String
    public var kind: Kind
    /// Edits between the folded plates (0 for exact and confusable matches).
    public var distance: Int
}

/// Finds watch-list entries that match a plate, fast enough to run on every detection: entries
/// are indexed by their normalised and folded plates, and for fuzzy matches by every deletion
/// variant of the folded plate up to the distance limit (two strings within edit distance k
/// share a deletion variant), so a lookup costs a few hash probes, not a pass over the list.
public struct WatchlistMatcher: Sendable {
    /// The largest edit distance that still matches (after folding).
    public let maximumDistance: Int
    public private(set) var entries: [WatchlistEntry]
    private var exact: [String: [Int]] = [:]
    private var folded: [String: [Int]] = [:]
    private var variants: [[Unicode.Scalar]: [Int]] = [:]
    private var foldedScalars: [[Unicode.Scalar]] = []

    public init(entries: [WatchlistEntry], maximumDistance: Int = 1) {
        self.maximumDistance = max(0, maximumDistance)
        self.entries = entries
        for (index, entry) in entries.enumerated() {
            let normalized = PlateNormalizer.normalize(entry.plate)
            let foldedPlate = PlateNormalizer.foldNormalized(normalized)
            let scalars = Array(foldedPlate.unicodeScalars)
            foldedScalars.append(scalars)
            exact[normalized, default: []].append(index)
            folded[foldedPlate, default: []].append(index)
            if self.maximumDistance > 0 {
                for variant in PlateNormalizer.deletions(scalars, upTo: self.maximumDistance) {
                    variants[variant, default: []].append(index)
                }
            }
        }
    }

    /// The entries `plate` matches for a detection by `camera` at `checkpoint`, best first, one
    /// match per entry: exact, then confusable, then by distance.
    public func matches(plate: String, camera: String, checkpoint: String, country: String?, at time: Date) -> [WatchlistMatch] {
        guard !entries.isEmpty else { return [] }
        let normalized = PlateNormalizer.normalize(plate)
        guard !normalized.isEmpty else { return [] }
        let foldedPlate = PlateNormalizer.foldNormalized(normalized)
        var best: [Int: WatchlistMatch] = [:]
        func consider(_ index: Int, _ kind: WatchlistMatch.Kind, _ distance: Int) {
            let entry = entries[index]
            guard entry.applies(camera: camera, checkpoint: checkpoint, country: country, at: time) else { return }
            if let existing = best[index], (existing.kind, existing.distance) <= (kind, distance) { return }
            best[index] = WatchlistMatch(entry: entry, plateNumber: plate, kind: kind, distance: distance)
        }
        for index in exact[normalized] ?? [] { consider(index, .exact, 0) }
        for index in folded[foldedPlate] ?? [] { consider(index, .confusable, 0) }
        if maximumDistance > 0 {
            let scalars = Array(foldedPlate.unicodeScalars)
            var candidates: Set<Int> = []
            for variant in PlateNormalizer.deletions(scalars, upTo: maximumDistance) {
                for index in variants[variant] ?? [] { candidates.insert(index) }
            }
            for index in candidates where best[index] == nil {
                if let distance = PlateNormalizer.distance(scalars, foldedScalars[index], limit: maximumDistance) {
                    consider(index, distance == 0 ? .confusable : .fuzzy, distance)
                }
            }
        }
        return best.values.sorted { ($0.kind, $0.distance, $0.entry.id) < ($1.kind, $1.distance, $1.entry.id) }
    }
}
