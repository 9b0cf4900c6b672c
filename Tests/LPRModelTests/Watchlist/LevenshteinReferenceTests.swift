import DatabusTestSupport
import Foundation
import LPRModel
import Testing

/// Our Levenshtein distance against an independent implementation: PyPI's rapidfuzz
/// (installed by scripts/test).
@Suite("Levenshtein distance agrees with rapidfuzz")
struct LevenshteinReferenceTests {
    @Test("500 random pairs of plates, including non-ASCII ones")
    func agreesWithRapidfuzz() async throws {
        var generator = SeededGenerator(seed: 7)
        let alphabet = Array("ABC0123456789กขค")
        var pairs: [(String, String)] = []
        for _ in 0..<500 {
            func word() -> String { String((0..<Int.random(in: 0...9, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }) }
            pairs.append((word(), word()))
        }
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let input = pairs.map { "\($0.0)\t\($0.1)" }.joined(separator: "\n") + "\n"
        let inputPath = try directory.write("pairs.tsv", input)
        let script = try directory.write(
            "distance.py",
            """
            import sys
            from rapidfuzz.distance import Levenshtein
            for line in open(sys.argv[1], encoding="utf-8"):
                a, b = line.rstrip("\\n").split("\\t")
                print(Levenshtein.distance(a, b))
            """
        )
        let result = try await runProgram("/usr/bin/env", ["python3", script, inputPath])
        #expect(result.status == 0, "python3 with rapidfuzz: \(result.output)")
        let expected = result.output.split(separator: "\n").map { Int($0) }
        #expect(expected.count == pairs.count)
        for (pair, reference) in zip(pairs, expected) {
            let ours = PlateNormalizer.distance(Array(pair.0.unicodeScalars), Array(pair.1.unicodeScalars), limit: 20)
            #expect(ours == reference, "\(pair.0) / \(pair.1)")
        }
    }
}
