import ServiceLifecycle

extension MQTTClient: Service {
    /// Runs the client in a `ServiceGroup`: connects (retrying by the reconnect policy from the
    /// first attempt), keeps the connection, and disconnects cleanly on graceful shutdown or cancellation.
    ///
    /// - Throws: ``MQTTClientError/Code-swift.struct/reconnectAttemptsExhausted`` when the policy gave up.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await runUntilStopped()
        } onGracefulShutdown: {
            Task { await self.disconnect() }
        }
    }
}
