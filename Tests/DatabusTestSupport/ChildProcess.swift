import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A program started by a test with posix_spawn, waited for and stopped by its PID.
///
/// Foundation's `Process.waitUntilExit()` can spin forever on Linux once the child has been
/// signalled; this waits with `waitpid` and a deadline instead.
public struct ChildProcess: Sendable {
    public let pid: pid_t

    /// Starts `program` (looked up on PATH) with `arguments`; standard input comes from
    /// `inputPath`, standard output goes to `outputPath` and standard error to `errorPath` when
    /// given, otherwise from and to /dev/null.
    public static func spawn(
        _ program: String,
        _ arguments: [String],
        inputPath: String? = nil,
        outputPath: String? = nil,
        errorPath: String? = nil
    ) throws -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inputPath ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // Nothing else of the test process goes to the child: NIO's sockets are not all
        // close-on-exec, and a listening or connected socket kept open by a child (mosquitto,
        // mosquitto_sub, ...) holds its port, or keeps a connection from closing, for the
        // child's lifetime, breaking tests that run in parallel.
        closeInheritedDescriptors(&actions)

        // The test runner blocks signals on its threads; a child inherits that mask and would
        // then ignore SIGTERM. Start it with an empty mask and default signal handling.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaultSignals, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv: [UnsafeMutablePointer<CChar>?] = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, program, &actions, &attributes, argv, environ)
        guard result == 0 else { throw InteropError("could not start \(program): \(String(cString: strerror(result)))") }
        return ChildProcess(pid: pid)
    }

    /// Asks the spawn to close every descriptor from 3 up in the child, with glibc's
    /// `posix_spawn_file_actions_addclosefrom_np` (2.34+; Swift's Glibc module does not import
    /// it). Elsewhere, marks the parent's descriptors close-on-exec instead.
    private static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        #if canImport(Glibc)
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        // dlsym(RTLD_DEFAULT, ...): RTLD_DEFAULT is a null handle in glibc.
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
            return
        }
        #endif
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/fd")) ?? [] {
            guard let descriptor = Int32(name), descriptor > 2 else { continue }
            let flags = fcntl(descriptor, F_GETFD)
            if flags >= 0 { _ = fcntl(descriptor, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// Whether the process is still running (and not yet reaped).
    public var isRunning: Bool { kill(pid, 0) == 0 && !hasExited().exited }

    private func hasExited() -> (exited: Bool, status: Int32) {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        guard result == pid else { return (result < 0, -1) }
        // WIFEXITED / WEXITSTATUS, spelled out: the macros are not imported into Swift.
        let exitedNormally = status & 0x7F == 0
        return (true, exitedNormally ? (status >> 8) & 0xFF : 128 + (status & 0x7F))
    }

    /// Waits for the process to end and returns its exit status (128 + signal when killed);
    /// kills it with SIGKILL after `timeout`.
    @discardableResult
    public func wait(timeout: Duration = .seconds(30)) async -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (exited, status) = hasExited()
            if exited { return status }
            try? await Task.sleep(for: .milliseconds(10))
        }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return 128 + SIGKILL
    }

    /// Sends `signal` (SIGKILL, SIGSTOP, SIGCONT, ...) to the process.
    public func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to end, then SIGKILL.
    @discardableResult
    public func terminate(timeout: Duration = .seconds(5)) async -> Int32 {
        kill(pid, SIGTERM)
        return await wait(timeout: timeout)
    }
}

/// Runs a program to completion and returns its exit status and standard output.
public func runProgram(_ program: String, _ arguments: [String], timeout: Duration = .seconds(30)) async throws -> (status: Int32, output: String) {
    let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("databus-output-\(UUID().uuidString)").path
    defer { try? FileManager.default.removeItem(atPath: outputPath) }
    let child = try ChildProcess.spawn(program, arguments, outputPath: outputPath)
    let status = await child.wait(timeout: timeout)
    let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    return (status, output)
}

/// What a program printed and how it ended.
public struct ProgramResult: Sendable {
    public let status: Int32
    public let output: String
    public let errorOutput: String
}

/// Runs a program to completion and returns its exit status, standard output and standard error.
public func runProgramCollectingErrors(_ program: String, _ arguments: [String], timeout: Duration = .seconds(30)) async throws -> ProgramResult {
    let base = FileManager.default.temporaryDirectory.appendingPathComponent("databus-run-\(UUID().uuidString)").path
    defer {
        try? FileManager.default.removeItem(atPath: base + ".out")
        try? FileManager.default.removeItem(atPath: base + ".err")
    }
    let child = try ChildProcess.spawn(program, arguments, outputPath: base + ".out", errorPath: base + ".err")
    let status = await child.wait(timeout: timeout)
    return ProgramResult(
        status: status,
        output: (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "",
        errorOutput: (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
    )
}
