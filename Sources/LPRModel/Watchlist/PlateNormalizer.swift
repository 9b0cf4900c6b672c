/// How plates are compared: case, spaces and separators do not count, and characters an OCR
/// engine confuses (O/0/D/Q, I/1/L, B/8, S/5, Z/2, G/6) are folded to one canonical character
/// each, so that a pure OCR confusion is no difference at all.
public enum PlateNormalizer {
    /// Upper case, letters and digits only: `"ab-12 34"` → `"AB1234"`.
    public static func normalize(_ plate: String) -> String {
        var result = String.UnicodeScalarView()
        for scalar in plate.uppercased().unicodeScalars where scalar.properties.isAlphabetic || scalar.properties.numericType != nil {
            result.append(scalar)
        }
        return String(result)
    }

    /// The normalised plate with each confusable character replaced by its group's canonical
    /// character: `"AB-1234"` and `"A8I234"` both become `"A81234"`.
    public static func fold(_ plate: String) -> String {
        String(String.UnicodeScalarView(normalize(plate).unicodeScalars.map(foldScalar)))
    }

    /// Folds one already normalised plate.
    public static func foldNormalized(_ normalized: String) -> String {
        String(String.UnicodeScalarView(normalized.unicodeScalars.map(foldScalar)))
    }

    static func foldScalar(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        switch scalar {
        case "O", "D", "Q": "0"
        case "I", "L": "1"
        case "B": "8"
        case "S": "5"
        case "Z": "2"
        case "G": "6"
        default: scalar
        }
    }

    /// The characters a folded ASCII plate can hold: digits and the letters no group folds away.
    public static let foldedASCIIAlphabet: [Unicode.Scalar] = Array("0123456789ACEFHJKMNPRTUVWXY".unicodeScalars)

    /// The Levenshtein distance between two strings' scalars, or `nil` when it is above `limit`
    /// (cut short as soon as it must be).
    public static func distance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar], limit: Int) -> Int? {
        if abs(a.count - b.count) > limit { return nil }
        if a.isEmpty { return b.count <= limit ? b.count : nil }
        if b.isEmpty { return a.count <= limit ? a.count : nil }
        var previous = Array(0...b.count)
        var current = Array(repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            var rowMinimum = current[0]
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                rowMinimum = min(rowMinimum, current[j])
            }
            if rowMinimum > limit { return nil }
            swap(&previous, &current)
        }
        return previous[b.count] <= limit ? previous[b.count] : nil
    }

    /// Every string made from `scalars` by deleting up to `count` characters, itself included.
    public static func deletions(_ scalars: [Unicode.Scalar], upTo count: Int) -> Set<[Unicode.Scalar]> {
        var result: Set<[Unicode.Scalar]> = [scalars]
        var frontier: Set<[Unicode.Scalar]> = [scalars]
        for _ in 0..<count {
            var next: Set<[Unicode.Scalar]> = []
            for word in frontier where !word.isEmpty {
                for index in word.indices {
                    var shorter = word
                    shorter.remove(at: index)
                    if result.insert(shorter).inserted { next.insert(shorter) }
                }
            }
            frontier = next
        }
        return result
    }

    /// Every folded plate within edit distance 1 of `folded` over the folded ASCII alphabet plus
    /// the plate's own characters: the keys a store looks up to find fuzzy matches with an index.
    public static func neighbourhood(ofFolded folded: String) -> Set<String> {
        let scalars = Array(folded.unicodeScalars)
        var alphabet = Set(foldedASCIIAlphabet)
        alphabet.formUnion(scalars)
        var result: Set<String> = [folded]
        func add(_ word: [Unicode.Scalar]) {
            if !word.isEmpty { result.insert(String(String.UnicodeScalarView(word))) }
        }
        for index in scalars.indices {
            var deleted = scalars
            deleted.remove(at: index)
            add(deleted)
            for letter in alphabet where letter != scalars[index] {
                var substituted = scalars
                substituted[index] = letter
                add(substituted)
            }
        }
        for index in 0...scalars.count {
            for letter in alphabet {
                var inserted = scalars
                inserted.insert(letter, at: index)
                add(inserted)
            }
        }
        return result
    }
}
