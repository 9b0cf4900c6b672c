import DatabusTestSupport
import Foundation
import MQTTCore
import Testing

@testable import MQTTBroker

#if canImport(Glibc)
import Glibc
#endif

/// A second engineer's review of parking idle connections (`park_idle_connections`) and the
/// malloc tuning that comes with it: each test shows one bug.
@Suite("Parking idle connections, review")
struct ParkingReviewTests {
    /// glibc's dynamic loader on this machine, if it is where the usual ABIs put it.
    static let dynamicLoader = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    // Found in review: MallocTuning ran "/proc/self/exe" with the arguments, but started
    // through the dynamic loader (`ld.so [--library-path DIR] databus broker ...`, as bundles
    // that ship the Swift runtime beside the executable do) that is the loader, which then took
    // "broker" for the program and the broker never started. It now runs itself again only
    // when the kernel started it with its loader (AT_BASE set).
    @Test(
        "databus broker started through the dynamic loader starts listening (it is not run again as something else)",
        .enabled(if: Self.dynamicLoader != nil)
    )
    func brokerStartedThroughTheDynamicLoader() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-ldso")
        defer { folder.remove() }
        let port = try await Mosquitto.freePort()
        let configuration = try folder.write("databus.conf", "listener \(port) 127.0.0.1\nallow_anonymous true\npark_idle_connections 10\n")
        let process = try ChildProcess.spawn(
            Self.dynamicLoader!,
            [try DatabusBrokerProcess.executable(), "broker", "-c", configuration],
            errorPath: folder.file("databus.log")
        )
        var accepted = false
        let deadline = ContinuousClock.now + .seconds(15)
        while !accepted && ContinuousClock.now < deadline && process.isRunning {
            if let (client, connack) = try? await connect(port: port, "through-ld-so") {
                accepted = connack.reasonCode == .success
                await client.close()
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let running = process.isRunning
        if running { await process.terminate() }
        let log = (try? String(contentsOfFile: folder.file("databus.log"), encoding: .utf8)) ?? ""
        #expect(accepted, "not listening (running: \(running)); the log ends: \(log.suffix(300))")
    }
}
