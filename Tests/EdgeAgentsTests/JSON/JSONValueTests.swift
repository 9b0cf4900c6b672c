import EdgeAgents
import Testing

@Suite("JSON values that keep what came")
struct JSONValueTests {
    @Test("the field examples come back byte for byte in compact form: order, numbers and nulls kept")
    func fixturesRoundTrip() throws {
        let line = try Fixtures.text("pipeline-metadata-detection.json").trimmingCharacters(in: .whitespacesAndNewlines)
        let compact = line.replacingOccurrences(of: ", ", with: ",").replacingOccurrences(of: ": ", with: ":")
        #expect(try JSONValue(parsing: line).serialized == compact)
    }

    @Test("numbers keep their form: 2 stays 2, 1.0 stays 1.0, exponents and long fractions too")
    func numbersKeepTheirForm() throws {
        let text = #"{"a":2,"b":1.0,"c":-0.5e-3,"d":0.9196773171424866,"e":12345678901234567890,"f":[1,2.50]}"#
        let value = try JSONValue(parsing: text)
        #expect(value.serialized == text)
        #expect(value["a"] == .number("2"))
        #expect(value["e"]?.intValue == nil)
    }

    @Test("strings: escapes are decoded and written back as JSON; non-ASCII stays UTF-8")
    func strings() throws {
        let value = try JSONValue(parsing: #"["a\"b\\c\/d\n\t\u00e9\ud83d\ude97","Zürich"]"#)
        #expect(value == .array([.string("a\"b\\c/d\n\té🚗"), .string("Zürich")]))
        #expect(value.serialized == #"["a\"b\\c/d\n\té🚗","Zürich"]"#)
        #expect(JSONValue.string("\u{01}").serialized == #""\u0001""#)
    }

    @Test(
        "bad JSON is refused with where and why, never a crash",
        arguments: [
            "", "{", "{\"a\" 1}", "[1,]", "01", "1.", "-", "\"abc", "tru", "{\"a\":1} x", "\"\\x\"", "\"\\ud800\"", "[\u{01}]", "nul",
        ]
    )
    func refused(text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: text) }
    }

    @Test("nesting deeper than the limit is refused instead of exhausting the stack")
    func deepNesting() throws {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deep) }
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(try JSONValue(parsing: fine).serialized == fine)
    }

    @Test("invalid UTF-8 in a string is refused")
    func invalidUTF8() {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: [0x22, 0xC3, 0x28, 0x22]) }
    }
}
