import DatabusTestSupport
import Foundation
import Testing

@Suite("Traffic-lights example", .serialized, .timeLimit(.minutes(3)))
struct TrafficLightsTests {
    @Test("five switches over a password-protected broker", arguments: BrokerKind.allCases)
    func fiveSwitches(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let passwords = folder.file("passwords")
        let made =
            kind == .databus
            ? try await runProgramCollectingErrors(try DatabusBrokerProcess.executable(), ["passwd", "-c", "-b", passwords, "lights", "s3cret"])
            : try await runProgramCollectingErrors("mosquitto_passwd", ["-c", "-b", passwords, "lights", "s3cret"])
        try #require(made.status == 0, "\(made.errorOutput)")
        _ = try await runProgram("chmod", ["644", passwords])
        try await kind.with(extraConfiguration: "allow_anonymous false\npassword_file \(passwords)\n") { broker in
            let lights = try builtExecutable("traffic-lights")
            let result = try await runProgramCollectingErrors(
                lights,
                ["--port", "\(broker.port)", "--username", "lights", "--password", "s3cret", "--interval", "0.2", "--switches", "5"],
                timeout: .seconds(60)
            )
            #expect(result.status == 0, "\(result.errorOutput)")
            let switches = result.output.split(separator: "\n").filter { $0.hasPrefix("switch ") }
            #expect(
                switches == [
                    "switch 1: light A green -> yellow, light B red -> red",
                    "switch 2: light A yellow -> red, light B red -> green",
                    "switch 3: light A red -> green, light B green -> red",
                    "switch 4: light A green -> yellow, light B red -> red",
                    "switch 5: light A yellow -> red, light B red -> green",
                ]
            )
            // A wrong password is refused: no switch.
            let refused = try await runProgramCollectingErrors(
                lights,
                ["--port", "\(broker.port)", "--username", "lights", "--password", "wrong", "--interval", "0.2", "--switches", "1"],
                timeout: .seconds(30)
            )
            #expect(refused.status != 0)
            #expect(!refused.output.contains("switch 1"))
        }
    }
}
