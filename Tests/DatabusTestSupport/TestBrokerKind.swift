import Foundation
import NIOConcurrencyHelpers
import Testing

/// The brokers the client's tests run against: Debian's mosquitto, so that the client never
/// depends on our own broker, and `databus broker`.
public enum TestBrokerKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case mosquitto
    case databus

    public var testDescription: String { self == .mosquitto ? "mosquitto" : "databus broker" }

    /// Starts this broker with `extraConfiguration` (mosquitto.conf lines), runs `body` with it,
    /// and stops it by PID however `body` ends.
    public func with(extraConfiguration: String = "", _ body: (any TestBroker) async throws -> Void) async throws {
        switch self {
        case .mosquitto: try await Mosquitto.with(extraConfiguration: extraConfiguration) { try await body($0) }
        case .databus: try await DatabusBrokerProcess.with(extraConfiguration: extraConfiguration) { try await body($0) }
        }
    }
}

/// Runs `body` and throws when it takes longer than `timeout` (a safety net, never an assertion on time).
///
/// On timeout `body` is cancelled and the call returns at once, even if `body` ignores the
/// cancellation: a test fails instead of hanging.
public func withDeadline<T: Sendable>(_ timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let outcome = AsyncOutcome<T>()
    let work = Task {
        do {
            outcome.complete(.success(try await body()))
        } catch {
            outcome.complete(.failure(error))
        }
    }
    let timer = Task {
        try await Task.sleep(for: timeout)
        outcome.complete(.failure(InteropError("\(what): nothing after \(timeout)")))
        work.cancel()
    }
    defer { timer.cancel() }
    return try await outcome.value()
}

/// A result that arrives once, from whichever task is first.
public final class AsyncOutcome<T: Sendable>: Sendable {
    public init() {}

    private let state = NIOLockedValueBox<(result: Result<T, any Error>?, waiter: CheckedContinuation<T, any Error>?)>((nil, nil))

    public func complete(_ result: Result<T, any Error>) {
        let waiter: CheckedContinuation<T, any Error>? = state.withLockedValue { state in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    public func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<T, any Error>? = state.withLockedValue { state in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
