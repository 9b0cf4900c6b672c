import LPRModel
import Testing

@Suite("JSON values keep what they were given")
struct JSONValueTests {
    @Test("numbers, member order and unknown members survive a parse and a write unchanged")
    func roundTrip() throws {
        let text = #"{"b":2,"a":1.50,"z":-0.0,"e":1E+3,"big":12345678901234567890,"s":"x","n":null,"t":true,"f":false,"arr":[1,[2,{}],[]]}"#
        let value = try JSONValue.parse(text)
        #expect(value.jsonText == text)
        #expect(value.objectValue?.keys == ["b", "a", "z", "e", "big", "s", "n", "t", "f", "arr"])
        #expect(value["b"]?.intValue == 2)
        #expect(value["a"]?.doubleValue == 1.5)
    }

    @Test("strings: every escape is read, and written back as valid JSON")
    func escapes() throws {
        let value = try JSONValue.parse(#""q\"b\\s\/n\nr\rt\tb\bf\fu\u00e9\ud83d\ude97 ก""#)
        #expect(value.stringValue == "q\"b\\s/n\nr\rt\tb\u{08}f\u{0C}u\u{E9}\u{1F697} ก")
        let again = try JSONValue.parse(value.jsonText)
        #expect(again == value)
        #expect(JSONValue.string("\u{01}").jsonText == #""\u0001""#)
    }

    @Test(
        "bad JSON is refused with a reason, never a crash",
        arguments: [
            "", "{", "[1,]", "{\"a\" 1}", "{\"a\":1,}", "01", "1.", "-", "1e", "\"abc", "\"\\x\"", "\"\\ud800\"", "tru", "nul",
            "{\"a\":1} x", "[\"\u{01}\"]", "{1:2}", "\"\\u12\"",
        ]
    )
    func refused(text: String) {
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(text) }
    }

    @Test("invalid UTF-8 and deep nesting are refused")
    func hostileInput() {
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse([0x22, 0xFF, 0xFE, 0x22]) }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(deep) }
        #expect((try? JSONValue.parse(String(repeating: "[", count: 60) + String(repeating: "]", count: 60))) != nil)
    }

    @Test("a top-level string is found at any depth of nesting, in a text cut short after it, and not inside nested objects")
    func topLevelString() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        let cases: [(String, String?)] = [
            (#"{"metadata":{"x":\#(deep)},"n":-1.5e3,"ok":true,"none":null,"message_id":"m-1","tail":["#, "m-1"),
            (#" {"message_id" : "m\"2" } "#, #"m"2"#),
            (#"{"a":{"message_id":"inner"},"message_id":"outer"}"#, "outer"),
            (#"{"a":{"message_id":"inner"}}"#, nil),
            (#"{"message_id":42}"#, nil),
            (#"{"a":[1,2}],"message_id":"after-an-error"}"#, nil),
            (#"["message_id","m"]"#, nil),
            ("garbage", nil),
            ("", nil),
        ]
        for (text, expected) in cases {
            #expect(JSONValue.topLevelString("message_id", in: Array(text.utf8)) == expected, "\(text.prefix(80))")
        }
    }

    @Test(
        "an object of 200,000 members (a hostile detection's metadata) is read in one pass, the last of a repeated name winning",
        .timeLimit(.minutes(1))
    )
    func manyMembers() throws {
        var text = "{"
        for index in 0..<200_000 { text += "\"k\(index)\":\(index)," }
        text += "\"k7\":\"again\"}"
        let object = try #require(try JSONValue.parse(text).objectValue)
        #expect(object.count == 200_000)
        #expect(object["k7"] == "again")
        #expect(object.keys.prefix(3) == ["k0", "k1", "k2"])
        #expect(object["k199999"]?.intValue == 199_999)
    }

    @Test("doubles are written in their shortest form, whole ones without a fraction")
    func doubles() {
        #expect(JSONValue.double(0.92).jsonText == "0.92")
        #expect(JSONValue.double(5).jsonText == "5")
        #expect(JSONValue.double(-12.25).jsonText == "-12.25")
        #expect(JSONValue.double(.nan) == .null)
    }

    @Test("objects: setting a member replaces it in place, nil removes it, setIfMissing keeps an existing one")
    func objectEditing() {
        var object: JSONObject = ["a": 1, "b": 2]
        object["a"] = "x"
        object["c"] = 3
        object["b"] = nil
        #expect(object.keys == ["a", "c"])
        #expect(object.setIfMissing("a", 9) == false)
        #expect(object.setIfMissing("d", 4) == true)
        #expect(JSONValue.object(object).jsonText == #"{"a":"x","c":3,"d":4}"#)
    }
}
