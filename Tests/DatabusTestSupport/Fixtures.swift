import Foundation

/// The messages devices in the field send and expect (`Tests/Fixtures/examples`), as test fixtures.
public enum Fixtures {
    /// The folder of the examples.
    public static let examplesDirectory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("examples")

    /// The bytes of an example, by file name (`lpr-detection.json`).
    public static func example(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: examplesDirectory.appendingPathComponent(name)))
    }

    /// The text of an example.
    public static func exampleText(_ name: String) throws -> String {
        String(decoding: try example(name), as: UTF8.self)
    }
}
