import Foundation
import LPRModel

/// The commands the agent answers itself when no `--on-command` hook is given.
public enum BuiltInCommand: String, Sendable, Hashable, CaseIterable {
    /// Restarts the camera (the simulated one pauses for `parameters.delay_seconds`).
    case restartCamera = "restart_camera"
    /// Reports the agent's status.
    case getStatus = "get_status"
    /// Answers at once.
    case ping
}

/// Decides how the agent answers what arrives on `control`, without running anything: the
/// hook when there is one, else a built-in command, else `unsupported`. A command answered
/// before (QoS 2 redelivered after a reconnect) gets the same answer again instead of running
/// twice; one still running is not started again.
public struct CommandPlanner: Sendable {
    public enum Plan: Sendable, Hashable {
        /// Run the `--on-command` hook with the command.
        case runHook(ControlCommand)
        /// Answer with a built-in command.
        case builtIn(ControlCommand, BuiltInCommand)
        /// Answer this now (`unsupported`, or the earlier answer to a repeated command).
        case answer(ControlResponse)
        /// Already running: its answer will come.
        case ignore
        /// Not a command; answered with `error` when it has a `message_id`, else only logged.
        case invalid(messageID: String?, MessageValidationError)
    }

    public let hasHook: Bool
    /// How many answers are remembered for repeated commands.
    public let memory: Int
    private var answers: [String: ControlResponse] = [:]
    private var answerOrder: [String] = []
    private var running: Set<String> = []

    public init(hasHook: Bool, memory: Int = 256) {
        self.hasHook = hasHook
        self.memory = max(1, memory)
    }

    /// Plans the answer to a `control` payload for `cameraID`.
    public mutating func plan(payload: some Collection<UInt8>, cameraID: String, now: Date) -> Plan {
        let json: JSONObject
        do {
            json = try JSONObject.parse(payload)
        } catch {
            return .invalid(messageID: nil, error)
        }
        let command: ControlCommand
        do {
            command = try ControlCommand(validating: json, topicCamera: cameraID)
        } catch {
            return .invalid(messageID: json["message_id"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }, error)
        }
        if let earlier = answers[command.messageID] { return .answer(earlier) }
        if running.contains(command.messageID) { return .ignore }
        if hasHook {
            running.insert(command.messageID)
            return .runHook(command)
        }
        if let builtIn = BuiltInCommand(rawValue: command.command) {
            running.insert(command.messageID)
            return .builtIn(command, builtIn)
        }
        let response = ControlResponse(
            messageID: command.messageID,
            status: .unsupported,
            result: [
                "error": .string("unsupported command \"\(command.command)\""),
                "supported": .array(BuiltInCommand.allCases.map { .string($0.rawValue) }),
            ],
            timestamp: now
        )
        remember(response)
        return .answer(response)
    }

    /// Records the answer to a command that ran, for repeats.
    public mutating func finished(_ response: ControlResponse) {
        running.remove(response.messageID)
        remember(response)
    }

    private mutating func remember(_ response: ControlResponse) {
        if answers.updateValue(response, forKey: response.messageID) == nil { answerOrder.append(response.messageID) }
        if answerOrder.count > memory {
            let forgotten = answerOrder.removeFirst()
            answers[forgotten] = nil
        }
    }

    /// The answer the `--on-command` hook's run gives: exit status 0 is `ok`, 3 `unsupported`,
    /// anything else (a signal, a timeout) `error`. A JSON object on its standard output is the
    /// `result`; other output is kept as `result.output`.
    public static func response(to command: ControlCommand, hook: HookResult, now: Date) -> ControlResponse {
        var result: JSONObject = [:]
        let text = String(decoding: hook.output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if !text.isEmpty {
            if let value = try? JSONValue.parse(text) {
                if let object = value.objectValue { result = object } else { result["output"] = value }
            } else {
                result["output"] = .string(text)
            }
        }
        let status: ControlResponse.Status
        switch hook.termination {
        case .exited(0):
            status = .ok
        case .exited(3):
            status = .unsupported
        case .exited(let code):
            status = .error
            result.setIfMissing("exit_status", .int(Int(code)))
        case .signalled(let signal):
            status = .error
            result.setIfMissing("error", .string("the hook was killed by signal \(signal)"))
        case .timedOut(let after):
            status = .error
            result.setIfMissing("error", .string("the hook did not finish within \(after) s"))
        case .failedToStart(let reason):
            status = .error
            result.setIfMissing("error", .string("the hook could not start: \(reason)"))
        }
        if status == .error, !hook.errorOutput.isEmpty {
            let errors = String(decoding: hook.errorOutput.suffix(2000), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !errors.isEmpty { result.setIfMissing("stderr", .string(errors)) }
        }
        return ControlResponse(messageID: command.messageID, status: status, result: result, timestamp: now)
    }
}
