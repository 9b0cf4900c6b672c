import Foundation
import LPRModel
import Testing

@Suite("Watch-list matching")
struct WatchlistMatcherTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func matcher(_ entries: [WatchlistEntry], distance: Int = 1) -> WatchlistMatcher {
        WatchlistMatcher(entries: entries, maximumDistance: distance)
    }

    @Test("case, spaces and dashes do not count: an exact match")
    func exact() {
        let list = matcher([WatchlistEntry(id: "1", plate: "AB-123 CD", reason: "stolen")])
        let found = list.matches(plate: "ab123cd", camera: "C", checkpoint: "P", country: nil, at: now)
        #expect(found.map(\.kind) == [.exact])
        #expect(found.first?.distance == 0)
        #expect(found.first?.entry.reason == "stolen")
    }

    @Test(
        "OCR confusions are distance 0",
        arguments: [("ABC1234", "A8C1234"), ("OSZ1", "0521"), ("DQG", "0O6"), ("IL1", "1I1"), ("SB", "58")]
    )
    func confusions(listed: String, read: String) {
        let found = matcher([WatchlistEntry(id: "1", plate: listed)]).matches(plate: read, camera: "C", checkpoint: "P", country: nil, at: now)
        #expect(found.map(\.kind) == [.confusable])
        #expect(found.first?.distance == 0)
    }

    @Test("one edit after folding matches at the default limit; two do not")
    func levenshtein() {
        let list = matcher([WatchlistEntry(id: "1", plate: "ABC1234")])
        #expect(list.matches(plate: "ABC124", camera: "C", checkpoint: "P", country: nil, at: now).map(\.distance) == [1])  // deletion
        #expect(list.matches(plate: "ABC12345", camera: "C", checkpoint: "P", country: nil, at: now).map(\.distance) == [1])  // insertion
        #expect(list.matches(plate: "ABX1234", camera: "C", checkpoint: "P", country: nil, at: now).map(\.distance) == [1])  // substitution
        #expect(list.matches(plate: "A8X1234", camera: "C", checkpoint: "P", country: nil, at: now).map(\.distance) == [1])  // confusion + edit
        #expect(list.matches(plate: "XBC12X4", camera: "C", checkpoint: "P", country: nil, at: now).isEmpty)
        #expect(list.matches(plate: "ZZZ9999", camera: "C", checkpoint: "P", country: nil, at: now).isEmpty)
        let wider = matcher([WatchlistEntry(id: "1", plate: "ABC1234")], distance: 2)
        #expect(wider.matches(plate: "XBC12X4", camera: "C", checkpoint: "P", country: nil, at: now).map(\.distance) == [2])
        let strict = matcher([WatchlistEntry(id: "1", plate: "ABC1234")], distance: 0)
        #expect(strict.matches(plate: "ABX1234", camera: "C", checkpoint: "P", country: nil, at: now).isEmpty)
    }

    @Test("exact matches rank above confusions, confusions above edits")
    func ranking() {
        let list = matcher([
            WatchlistEntry(id: "fuzzy", plate: "ABC1235"), WatchlistEntry(id: "confusable", plate: "A8C1234"),
            WatchlistEntry(id: "exact", plate: "ABC1234"),
        ])
        let found = list.matches(plate: "ABC1234", camera: "C", checkpoint: "P", country: nil, at: now)
        #expect(found.map(\.entry.id) == ["exact", "confusable", "fuzzy"])
        #expect(found.map(\.kind) == [.exact, .confusable, .fuzzy])
    }

    @Test("scope: cameras, checkpoints, country and expiry limit where an entry matches")
    func scope() {
        let list = matcher([
            WatchlistEntry(id: "cam", plate: "AAA111", cameraIDs: ["CAM1"]),
            WatchlistEntry(id: "cp", plate: "BBB222", checkpointIDs: ["CP1"]),
            WatchlistEntry(id: "th", plate: "CCC333", country: "TH"),
            WatchlistEntry(id: "old", plate: "DDD444", expiresAt: now),
        ])
        #expect(list.matches(plate: "AAA111", camera: "CAM1", checkpoint: "X", country: nil, at: now).count == 1)
        #expect(list.matches(plate: "AAA111", camera: "CAM2", checkpoint: "X", country: nil, at: now).isEmpty)
        #expect(list.matches(plate: "BBB222", camera: "C", checkpoint: "CP1", country: nil, at: now).count == 1)
        #expect(list.matches(plate: "BBB222", camera: "C", checkpoint: "CP2", country: nil, at: now).isEmpty)
        #expect(list.matches(plate: "CCC333", camera: "C", checkpoint: "P", country: "th", at: now).count == 1)
        #expect(list.matches(plate: "CCC333", camera: "C", checkpoint: "P", country: "FR", at: now).isEmpty)
        #expect(list.matches(plate: "CCC333", camera: "C", checkpoint: "P", country: nil, at: now).count == 1)
        #expect(list.matches(plate: "DDD444", camera: "C", checkpoint: "P", country: nil, at: now.addingTimeInterval(-1)).count == 1)
        #expect(list.matches(plate: "DDD444", camera: "C", checkpoint: "P", country: nil, at: now).isEmpty)
    }

    @Test("the indexed lookup finds exactly what comparing with every entry finds, over random plates")
    func indexAgreesWithScan() {
        var generator = SeededGenerator(seed: 42)
        let alphabet = Array("ABCDEFGHJKLMNOPQRSTUVWXYZ0123456789")
        func plate() -> String { String((0..<Int.random(in: 4...8, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }) }
        let entries = (0..<300).map { WatchlistEntry(id: "e\($0)", plate: plate()) }
        for distance in [1, 2] {
            let list = matcher(entries, distance: distance)
            for _ in 0..<400 {
                var read = Array(entries.randomElement(using: &generator)!.plate)
                if Bool.random(using: &generator) {
                    read[Int.random(in: 0..<read.count, using: &generator)] = alphabet.randomElement(using: &generator)!
                }
                if Bool.random(using: &generator) { read.remove(at: Int.random(in: 0..<read.count, using: &generator)) }
                let text = Bool.random(using: &generator) ? String(read) : plate()
                let indexed = Set(list.matches(plate: text, camera: "C", checkpoint: "P", country: nil, at: now).map(\.entry.id))
                let folded = Array(PlateNormalizer.fold(text).unicodeScalars)
                let scanned = Set(
                    entries.filter { PlateNormalizer.distance(folded, Array(PlateNormalizer.fold($0.plate).unicodeScalars), limit: distance) != nil }
                        .map(\.id)
                )
                #expect(indexed == scanned, "\(text)")
            }
        }
    }

    @Test("the search neighbourhood holds every folded plate one edit away over the folded alphabet")
    func neighbourhood() {
        let keys = PlateNormalizer.neighbourhood(ofFolded: "A81234")
        #expect(keys.contains("A81234"))
        #expect(keys.contains("A8123"))
        #expect(keys.contains("A812345"))
        #expect(keys.contains("X81234"))
        #expect(!keys.contains("XX1234"))
        for key in keys.prefix(200) {
            #expect(PlateNormalizer.distance(Array(key.unicodeScalars), Array("A81234".unicodeScalars), limit: 1) != nil)
        }
    }
}

/// A small deterministic generator (SplitMix64) so random tests repeat.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
