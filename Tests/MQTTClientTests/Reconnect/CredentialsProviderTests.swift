import DatabusTestSupport
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// An authority that issues short-lived tokens: only the newest is valid, and mosquitto's
/// password file holds only it.
final class TokenAuthority: Sendable {
    private struct State {
        var generation = 0
        var handedOut: [Int] = []
    }

    private let state = NIOLockedValueBox(State())
    let directory: TemporaryDirectory

    init(directory: TemporaryDirectory) { self.directory = directory }

    var passwordFile: String { directory.file("passwords") }
    var currentGeneration: Int { state.withLockedValue { $0.generation } }
    /// The generation of the token handed to each connection attempt, in order.
    var handedOut: [Int] { state.withLockedValue { $0.handedOut } }

    /// Issues a new token; the previous one expires at once (it leaves the password file).
    func rotate() async throws {
        let generation = state.withLockedValue { state in
            state.generation += 1
            return state.generation
        }
        let result = try await runProgram("mosquitto_passwd", ["-b", "-c", passwordFile, "camera-17", Self.token(generation)])
        guard result.status == 0 else { throw InteropError("mosquitto_passwd failed") }
        try directory.makeReadable("passwords")
    }

    /// What the device fetches before each connection: the token valid now.
    func fetch() -> (username: String?, password: [UInt8]?) {
        let generation = state.withLockedValue { state in
            state.handedOut.append(state.generation)
            return state.generation
        }
        return ("camera-17", Array(Self.token(generation).utf8))
    }

    static func token(_ generation: Int) -> String { "jwt-\(generation)-\(generation * 7919)" }
}

@Suite("Credentials provider", .serialized, .timeLimit(.minutes(2)))
struct CredentialsProviderTests {
    @Test("the provider is called before every connection attempt, so an expired token is never reused")
    func freshCredentialsOnEveryReconnect() async throws {
        let directory = try TemporaryDirectory(prefix: "databus-tokens")
        defer { directory.remove() }
        let authority = TokenAuthority(directory: directory)
        try await authority.rotate()
        try await Mosquitto.with(extraConfiguration: "allow_anonymous false\npassword_file \(authority.passwordFile)") { broker in
            var configuration = MQTTClient.Configuration.test(broker, id: "camera-17")
            configuration.credentialsProvider = { authority.fetch() }
            try await withClient(configuration) { camera in
                let states = camera.states
                let recorder = Task {
                    var seen: [ConnectionState] = []
                    for await state in states {
                        seen.append(state)
                        if state == .stopped && seen.count > 1 { break }
                    }
                    return seen
                }
                for _ in 0..<3 {
                    // The token in use expires and the broker restarts: the client must fetch a new one.
                    try await authority.rotate()
                    await broker.terminate()
                    try await waitForState(camera) { $0.isBackingOff }
                    try await broker.restart()
                    try await waitForState(camera) { $0.isConnected }
                    let result = try await camera.publish(topic: "lprserver/cameras/17/status", payload: "online", qos: .atLeastOnce)
                    #expect(result.isSuccess)
                }
                await camera.disconnect()
                let seen = await recorder.value
                let attempts = seen.filter { $0 == .connecting }.count
                // One fetch per attempt, including the attempts refused while the broker was down.
                #expect(authority.handedOut.count == attempts + 1)  // + the first connect, before the recorder
                #expect(!seen.contains { if case .disconnected(.connectionRefused) = $0 { true } else { false } })
                // Each token handed out was the newest at the time: generations never go back.
                #expect(authority.handedOut == authority.handedOut.sorted())
                #expect(authority.handedOut.last == authority.currentGeneration)
                #expect(Set(authority.handedOut) == [1, 2, 3, 4])
            }
        }
    }

    @Test("a provider that throws fails the attempt and the client backs off and asks again")
    func providerFailure() async throws {
        try await Mosquitto.with { broker in
            let calls = NIOLockedValueBox(0)
            var configuration = MQTTClient.Configuration.test(broker, id: "camera-18")
            configuration.credentialsProvider = {
                let call = calls.withLockedValue { calls in
                    calls += 1
                    return calls
                }
                if call <= 2 { throw InteropError("token service unavailable") }
                return (nil, nil)
            }
            let camera = MQTTClient(configuration: configuration, logger: testLogger)
            let states = camera.states
            let run = Task { try await camera.runUntilStopped() }
            defer { run.cancel() }
            try await waitForState(states) { $0.isConnected }
            #expect(calls.withLockedValue { $0 } == 3)
            await camera.disconnect()
        }
    }
}
