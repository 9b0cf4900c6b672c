import DatabusTestSupport
import Foundation
import LPRModel
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import Testing

@Suite("The dashboard in Chromium", .serialized, .timeLimit(.minutes(5)))
struct DashboardBrowserTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Browser/dashboard_test.py").path

    @Test(
        "log in with the token; a detection from mosquitto_pub is in the feed within 2 s; a watch-listed plate is highlighted and alerted; a control command from the page reaches the camera"
    )
    func dashboard() async throws {
        try await withUp(arguments: ["--demo", "4"]) { up in
            // A second subscriber on the demo camera's control topic: what the page sends reaches it.
            let camera = MQTTClient(configuration: .init(host: "127.0.0.1", port: up.mqttPort, clientIdentifier: "browser-test-watcher"))
            try await camera.connect()
            defer { Task { await camera.disconnect() } }
            let commands = try await camera.subscribe(to: "lprserver/cameras/DEMO01/control", qos: .exactlyOnce)
            let received = NIOLockedValueBox<[String]>([])
            let collector = Task {
                for await message in commands {
                    let command = (try? JSONObject.parse(message.payload.readableBytesView))?["command"]?.stringValue ?? "?"
                    received.withLockedValue { $0.append(command) }
                }
            }
            defer { collector.cancel() }

            let screenshots = ProcessInfo.processInfo.environment["DATABUS_SCREENSHOTS"] ?? (up.data + "/screenshots")
            let result = try await runProgramCollectingErrors(
                "python3",
                [
                    Self.script, "--url", up.dashboard.absoluteString, "--token", up.adminToken, "--mqtt-port", "\(up.mqttPort)",
                    "--control-camera", "DEMO01", "--screenshots", screenshots,
                ],
                timeout: .seconds(180)
            )
            #expect(result.status == 0, "the browser test failed:\n\(result.output)\n\(result.errorOutput.suffix(3000))")
            let figures = try JSONObject.parse(Array((result.output.split(separator: "\n").last ?? "{}").utf8))
            #expect((figures["feed_seconds"]?.doubleValue ?? 99) < 2)
            #expect((figures["hit_seconds"]?.doubleValue ?? 99) < 2)
            #expect(received.withLockedValue { $0 }.contains("restart_camera"), "the camera got the page's command")
            for name in ["wall-dark.png", "wall-light.png", "phone-dark.png", "phone-light.png"] {
                #expect(FileManager.default.fileExists(atPath: screenshots + "/" + name), "\(name)")
            }
        }
    }
}
